// The agent's flags: kube-proxy's whole set (cmd/kube-proxy/app/options.go and component-base's
// logging flags, v1.33), then Switchyard's own. Each either has its effect (applyAgentFlags maps
// it onto the configuration) or carries `unused` and is named in the agent's one start-up warning.
import type { FlagSpec, FlagValue } from './flags.ts';

export const PROXY_MODES = ['ebpf', 'nftables', 'iptables', 'ipvs', 'auto', 'kernelspace'] as const;
export const DETECT_LOCAL_MODES = ['ClusterCIDR', 'NodeCIDR', 'BridgeInterface', 'InterfaceNamePrefix', 'None'] as const;
export const LOGGING_FORMATS = ['text', 'json'] as const;

const kp = (s: Omit<FlagSpec, 'origin'>): FlagSpec => ({ ...s, origin: 'kube-proxy' });
const sy = (s: Omit<FlagSpec, 'origin'>): FlagSpec => ({ ...s, origin: 'switchyard' });

/** Flags shared with trace (they shape the model). */
export const MODEL_FLAGS: readonly FlagSpec[] = [
  kp({ name: 'cluster-cidr', type: 'strings', placeholder: 'string', help: 'The CIDR range of the pods in the cluster (a comma-separated dual-stack pair for dual-stack clusters). With --detect-local-mode=ClusterCIDR, traffic from this range is local.' }),
  kp({ name: 'detect-local-mode', type: 'enum', values: DETECT_LOCAL_MODES, help: 'How to tell local (pod) traffic from the rest.' }),
  kp({ name: 'pod-bridge-interface', type: 'string', help: 'With --detect-local-mode=BridgeInterface: traffic arriving from this bridge is local.' }),
  kp({ name: 'pod-interface-name-prefix', type: 'string', help: 'With --detect-local-mode=InterfaceNamePrefix: traffic arriving from an interface whose name starts with this is local.' }),
  kp({ name: 'nodeport-addresses', type: 'strings', help: "CIDR ranges holding the node IPs that accept NodePort connections, or the single string 'primary' (the Node object's primary IPs). Unset: every local IP." }),
  kp({ name: 'masquerade-all', type: 'bool', default: 'false', help: 'SNAT all traffic sent via Service cluster IPs.' }),
  sy({ name: 'ip-families', type: 'strings', default: '4,6', help: 'The IP families to proxy: 4, 6 or 4,6.' }),
];

export const AGENT_FLAGS: readonly FlagSpec[] = [
  kp({ name: 'config', type: 'string', help: 'The path to the configuration file (a KubeProxyConfiguration, optionally followed by a SwitchyardConfiguration). Flags given as well override it.' }),
  kp({ name: 'write-config-to', type: 'string', help: 'Write the configuration in effect (every default spelled out) to this file, after checking it, and exit.' }),
  kp({ name: 'cleanup', type: 'bool', default: 'false', help: 'Remove every program, map, pin and rule any proxy mode made, and exit.' }),
  kp({ name: 'init-only', type: 'bool', default: 'false', help: 'Check the configuration and the sources, and exit: Switchyard has no separate privileged initialisation step.' }),
  kp({ name: 'feature-gates', type: 'mapStringBool', help: 'key=value pairs of feature gates.', unused: 'Switchyard has no feature gates; every feature it has is on' }),
  kp({ name: 'kubeconfig', type: 'string', help: 'Path to a kubeconfig file with the API server and credentials (--master overrides its server).' }),
  kp({ name: 'master', type: 'string', help: 'The address of the Kubernetes API server (overrides any value in the kubeconfig).' }),
  kp({ name: 'kube-api-content-type', type: 'string', default: 'application/vnd.kubernetes.protobuf', help: 'Content type of requests sent to the API server (protobuf or application/json).' }),
  kp({ name: 'kube-api-burst', type: 'int', default: '10', help: 'Burst to use while talking with the API server.' }),
  kp({ name: 'kube-api-qps', type: 'float', default: '5', help: 'QPS to use while talking with the API server.' }),
  kp({ name: 'hostname-override', type: 'string', help: "The name of the Node this agent runs on (default: the machine's hostname, lower-cased)." }),
  kp({ name: 'bind-address', type: 'string', placeholder: 'ip', default: '0.0.0.0', help: "Overrides the node's primary IP of its family (no socket is bound to it)." }),
  kp({ name: 'healthz-bind-address', type: 'string', placeholder: 'ipport', default: '0.0.0.0:10256', help: 'The IP address and port of the health server (/healthz, /livez). Empty: no health server.' }),
  kp({ name: 'metrics-bind-address', type: 'string', placeholder: 'ipport', default: '127.0.0.1:10249', help: 'The IP address and port of the metrics server (/metrics, /proxyMode, /configz). Empty: no metrics server.' }),
  kp({ name: 'bind-address-hard-fail', type: 'bool', default: 'false', help: 'Treat any failure to bind the health or metrics port as fatal. Without it a busy port (another proxy still running) is fatal all the same, and other bind failures are logged and retried every 5s.' }),
  kp({ name: 'profiling', type: 'bool', default: 'false', help: 'Serve /debug/pprof.', unused: 'no pprof in Node.js; use --inspect or the metrics server instead' }),
  kp({ name: 'show-hidden-metrics-for-version', type: 'string', help: 'The previous version for which to show hidden metrics.', unused: 'Switchyard hides no metrics' }),
  kp({ name: 'proxy-mode', type: 'enum', values: PROXY_MODES, default: 'ebpf', help: 'Which proxy mode to use; auto probes the kernel and picks ebpf, then nftables, then iptables.' }),
  kp({ name: 'iptables-masquerade-bit', type: 'int', default: '14', help: 'The fwmark bit that marks packets needing SNAT, in [0, 31] (iptables, nftables and ipvs modes; eBPF mode has no fwmark).' }),
  kp({ name: 'iptables-localhost-nodeports', type: 'bool', default: 'true', help: 'Serve NodePorts on 127.0.0.1 as well (IPv4): iptables mode sets route_localnet=1 as kube-proxy does; eBPF mode serves them from its socket hooks (cgroupRoot). nftables mode never does (as kube-proxy).' }),
  kp({ name: 'iptables-sync-period', type: 'duration', default: '30s', help: 'How often a full resync runs (iptables, nftables and ebpf modes); also half the health timeout.' }),
  kp({ name: 'iptables-min-sync-period', type: 'duration', default: '1s', help: 'The minimum period between syncs (iptables, nftables and ebpf modes); 0: every change syncs at once.' }),
  kp({ name: 'ipvs-sync-period', type: 'duration', default: '30s', help: 'How often a full resync runs in ipvs mode.' }),
  kp({ name: 'ipvs-min-sync-period', type: 'duration', default: '0s', help: 'The minimum period between syncs in ipvs mode.' }),
  kp({ name: 'ipvs-scheduler', type: 'enum', values: ['rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'dh', 'sh', 'sed', 'nq', 'mh'], default: 'rr', help: 'The IPVS scheduler in ipvs mode.' }),
  kp({ name: 'ipvs-exclude-cidrs', type: 'strings', help: 'CIDRs whose IPVS rules cleanup must not touch.', unused: 'Switchyard only removes virtual servers it made' }),
  kp({ name: 'ipvs-strict-arp', type: 'bool', default: 'false', help: 'Set arp_ignore=1 and arp_announce=2.', unused: 'Switchyard does not change ARP sysctls' }),
  kp({ name: 'ipvs-tcp-timeout', type: 'duration', default: '0s', help: 'IPVS idle TCP timeout, 0 to leave as-is.' }),
  kp({ name: 'ipvs-tcpfin-timeout', type: 'duration', default: '0s', help: 'IPVS TCP timeout after a FIN, 0 to leave as-is.' }),
  kp({ name: 'ipvs-udp-timeout', type: 'duration', default: '0s', help: 'IPVS UDP timeout, 0 to leave as-is.' }),
  ...MODEL_FLAGS,
  kp({ name: 'oom-score-adj', type: 'int', default: '-999', help: "The process's oom_score_adj, in [-1000, 1000]." }),
  kp({ name: 'conntrack-max-per-core', type: 'int', default: '32768', help: 'Maximum NAT connections to track per CPU core. The rule-based modes set the nf_conntrack sysctl, as kube-proxy; eBPF mode sizes or times its own connection tracking.' }),
  kp({ name: 'conntrack-min', type: 'int', default: '131072', help: 'Minimum conntrack entries to allocate. The rule-based modes set the nf_conntrack sysctl, as kube-proxy; eBPF mode sizes or times its own connection tracking.' }),
  kp({ name: 'conntrack-tcp-timeout-established', type: 'duration', default: '24h0m0s', help: 'Idle timeout for established TCP connections. The rule-based modes set the nf_conntrack sysctl, as kube-proxy; eBPF mode sizes or times its own connection tracking.' }),
  kp({ name: 'conntrack-tcp-timeout-close-wait', type: 'duration', default: '1h0m0s', help: 'NAT timeout for TCP connections in CLOSE_WAIT. The rule-based modes set the nf_conntrack sysctl, as kube-proxy; eBPF mode sizes or times its own connection tracking.' }),
  kp({ name: 'conntrack-tcp-be-liberal', type: 'bool', default: 'false', help: 'Set nf_conntrack_tcp_be_liberal to 1 (the rule-based modes).' }),
  kp({ name: 'conntrack-udp-timeout', type: 'duration', default: '0s', help: 'Idle timeout for unreplied UDP flows. The rule-based modes set the nf_conntrack sysctl, as kube-proxy; eBPF mode sizes or times its own connection tracking.' }),
  kp({ name: 'conntrack-udp-timeout-stream', type: 'duration', default: '0s', help: 'Idle timeout for assured UDP flows. The rule-based modes set the nf_conntrack sysctl, as kube-proxy; eBPF mode sizes or times its own connection tracking.' }),
  kp({ name: 'config-sync-period', type: 'duration', default: '15m0s', help: 'How often the datapath is re-read and drift repaired.' }),
  kp({ name: 'healthz-port', type: 'int', default: '10256', help: 'The port of the health server; 0 disables it.', deprecated: 'This flag is deprecated and will be removed in a future release. Please use --healthz-bind-address instead.' }),
  kp({ name: 'metrics-port', type: 'int', default: '10249', help: 'The port of the metrics server; 0 disables it.', deprecated: 'This flag is deprecated and will be removed in a future release. Please use --metrics-bind-address instead.' }),
  // component-base/logs (logsapi.AddFlags)
  kp({ name: 'v', short: 'v', type: 'int', placeholder: 'Level', default: '0', help: 'Log verbosity: 0 info, 2 more, 4 debug, 6 trace.' }),
  kp({ name: 'logging-format', type: 'enum', values: LOGGING_FORMATS, default: 'text', help: 'Log format: klog text lines, or one JSON object per line.' }),
  kp({ name: 'vmodule', type: 'strings', placeholder: 'pattern=N,...', help: 'Per-file verbosity.', unused: 'one verbosity for the whole process' }),
  kp({ name: 'log-flush-frequency', type: 'duration', default: '5s', help: 'Maximum time between log flushes.', unused: 'log lines are written unbuffered' }),
  kp({ name: 'log-text-split-stream', type: 'bool', default: 'false', help: 'Info to stdout, errors to stderr (text format).', unused: 'every line goes to stderr' }),
  kp({ name: 'log-text-info-buffer-size', type: 'string', placeholder: 'quantity', help: 'Buffer for info lines with split streams.', unused: 'log lines are written unbuffered' }),
  kp({ name: 'log-json-split-stream', type: 'bool', default: 'false', help: 'Info to stdout, errors to stderr (JSON format).', unused: 'every line goes to stderr' }),
  kp({ name: 'log-json-info-buffer-size', type: 'string', placeholder: 'quantity', help: 'Buffer for info lines with split streams.', unused: 'log lines are written unbuffered' }),
  kp({ name: 'version', type: 'bool', default: 'false', help: 'Print the version and exit.' }),
  kp({ name: 'help', short: 'h', type: 'bool', default: 'false', help: 'Print this help and exit.' }),
  // Switchyard's own
  sy({ name: 'manifests', type: 'string', help: 'Read Services, EndpointSlices and Nodes from this directory of YAML/JSON manifests instead of the API server.' }),
  sy({ name: 'bpffs-dir', type: 'string', default: '/sys/fs/bpf/switchyard', help: 'Where the eBPF maps and programs are pinned.' }),
  sy({ name: 'pod-device-prefixes', type: 'strings', default: 'veth', help: 'Interface name prefixes of pod-facing devices (eBPF mode).' }),
  sy({ name: 'external-devices', type: 'strings', help: "The node's external devices, where NodePort and LoadBalancer traffic arrives (eBPF mode)." }),
  sy({ name: 'cgroup-root', type: 'string', help: 'The cgroup v2 root for the socket-level hooks (eBPF mode); unset: no socket hooks.' }),
  sy({ name: 'service-cluster-ip-range', type: 'strings', help: "The cluster's service CIDRs (the API server's --service-cluster-ip-range), used while the API server has no ServiceCIDR objects: nftables and eBPF mode drop traffic to unallocated ClusterIPs in them, as kube-proxy's cluster-ips-check; the start refuses an API server address inside them unless told (apiServerViaClusterIP)." }),
];

export type AgentFlagValues = ReadonlyMap<string, FlagValue>;

type Dict = Record<string, unknown>;
function set(o: Dict, path: string, v: unknown): void {
  const keys = path.split('.');
  let cur = o;
  for (const k of keys.slice(0, -1)) cur = (cur[k] ??= {}) as Dict;
  cur[keys.at(-1)!] = v;
}

/** "0.0.0.0:10256" with its port replaced (kube-proxy's deprecated --healthz-port/--metrics-port). */
function withPort(address: unknown, port: number): string {
  if (port === 0) return '';
  const host = String(address ?? '').replace(/:\d+$/, '') || '0.0.0.0';
  return `${host}:${port}`;
}

/** Where each used kube-proxy flag lands in KubeProxyConfiguration (v1alpha1 field paths). */
const KUBE_PROXY_PATHS: Record<string, string | string[]> = {
  kubeconfig: 'clientConnection.kubeconfig',
  'kube-api-content-type': 'clientConnection.contentType',
  'kube-api-burst': 'clientConnection.burst',
  'kube-api-qps': 'clientConnection.qps',
  'hostname-override': 'hostnameOverride',
  'bind-address': 'bindAddress',
  'healthz-bind-address': 'healthzBindAddress',
  'metrics-bind-address': 'metricsBindAddress',
  'bind-address-hard-fail': 'bindAddressHardFail',
  'proxy-mode': 'mode',
  'iptables-sync-period': ['iptables.syncPeriod', 'nftables.syncPeriod'],
  'iptables-min-sync-period': ['iptables.minSyncPeriod', 'nftables.minSyncPeriod'],
  'ipvs-sync-period': 'ipvs.syncPeriod',
  'ipvs-min-sync-period': 'ipvs.minSyncPeriod',
  'ipvs-scheduler': 'ipvs.scheduler',
  'ipvs-tcp-timeout': 'ipvs.tcpTimeout',
  'ipvs-tcpfin-timeout': 'ipvs.tcpFinTimeout',
  'ipvs-udp-timeout': 'ipvs.udpTimeout',
  'masquerade-all': ['iptables.masqueradeAll', 'nftables.masqueradeAll'],
  'detect-local-mode': 'detectLocalMode',
  'pod-bridge-interface': 'detectLocal.bridgeInterface',
  'pod-interface-name-prefix': 'detectLocal.interfaceNamePrefix',
  'nodeport-addresses': 'nodePortAddresses',
  'oom-score-adj': 'oomScoreAdj',
  'config-sync-period': 'configSyncPeriod',
  v: 'logging.verbosity',
  'logging-format': 'logging.format',
  'iptables-masquerade-bit': ['iptables.masqueradeBit', 'nftables.masqueradeBit'],
  'iptables-localhost-nodeports': 'iptables.localhostNodePorts',
  // Accepted and kept in the configuration (/configz shows them), without effect: see `unused`.
  'feature-gates': 'featureGates',
  profiling: 'enableProfiling',
  'show-hidden-metrics-for-version': 'showHiddenMetricsForVersion',
  'ipvs-exclude-cidrs': 'ipvs.excludeCIDRs',
  'ipvs-strict-arp': 'ipvs.strictARP',
  'conntrack-max-per-core': 'conntrack.maxPerCore',
  'conntrack-min': 'conntrack.min',
  'conntrack-tcp-timeout-established': 'conntrack.tcpEstablishedTimeout',
  'conntrack-tcp-timeout-close-wait': 'conntrack.tcpCloseWaitTimeout',
  'conntrack-tcp-be-liberal': 'conntrack.tcpBeLiberal',
  'conntrack-udp-timeout': 'conntrack.udpTimeout',
  'conntrack-udp-timeout-stream': 'conntrack.udpStreamTimeout',
  vmodule: 'logging.vmodule',
  'log-flush-frequency': 'logging.flushFrequency',
};

const SWITCHYARD_PATHS: Record<string, string> = {
  'bpffs-dir': 'bpffsDir',
  'pod-device-prefixes': 'podDevicePrefixes',
  'external-devices': 'externalDevices',
  'cgroup-root': 'cgroupRoot',
  'service-cluster-ip-range': 'serviceCIDRs',
};

/** Flags read by the command itself rather than stored in the configuration. */
export const COMMAND_FLAGS: ReadonlySet<string> = new Set(['config', 'write-config-to', 'cleanup', 'init-only', 'master', 'manifests', 'ip-families', 'healthz-port', 'metrics-port', 'version', 'help', 'log-text-split-stream', 'log-text-info-buffer-size', 'log-json-split-stream', 'log-json-info-buffer-size']);

/** Writes the given flags into the loaded configuration (kube-proxy's and Switchyard's documents). */
export function applyAgentFlags(values: AgentFlagValues, kubeProxy: Dict, switchyard: Dict, fromFile: boolean): void {
  for (const [name, value] of values) {
    const paths = KUBE_PROXY_PATHS[name];
    if (paths !== undefined) {
      // As kube-proxy: the node name trimmed and lower-cased; one of only spaces is left for validation to refuse.
      const v = name === 'hostname-override' && String(value).trim() !== '' ? String(value).trim().toLowerCase() : value;
      for (const p of typeof paths === 'string' ? [paths] : paths) set(kubeProxy, p, v);
    }
    const syPath = SWITCHYARD_PATHS[name];
    if (syPath !== undefined) set(switchyard, syPath, value);
  }
  const cidrs = values.get('cluster-cidr') as string[] | undefined;
  if (cidrs !== undefined) set(kubeProxy, 'clusterCIDR', cidrs.join(','));
  // As kube-proxy: the deprecated port flags count only without a configuration file.
  if (!fromFile) {
    const hp = values.get('healthz-port') as number | undefined;
    if (hp !== undefined) set(kubeProxy, 'healthzBindAddress', withPort(kubeProxy.healthzBindAddress, hp));
    const mp = values.get('metrics-port') as number | undefined;
    if (mp !== undefined) set(kubeProxy, 'metricsBindAddress', withPort(kubeProxy.metricsBindAddress, mp));
  }
}

/** The KubeProxyConfiguration fields a flag sets. */
export function flagFieldPaths(name: string): readonly string[] {
  const paths = KUBE_PROXY_PATHS[name];
  return paths === undefined ? [] : typeof paths === 'string' ? [paths] : paths;
}

/** Every flag given that has no effect, for the one start-up warning. */
export function unusedFlagsGiven(values: AgentFlagValues): FlagSpec[] {
  return AGENT_FLAGS.filter((s) => s.unused !== undefined && values.has(s.name));
}

/** Every flag in the table is either mapped or read by the command: checked by a test. */
export function flagHasEffectPath(name: string): boolean {
  return KUBE_PROXY_PATHS[name] !== undefined || SWITCHYARD_PATHS[name] !== undefined || COMMAND_FLAGS.has(name) || name === 'cluster-cidr';
}
