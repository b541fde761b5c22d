// Which KubeProxyConfiguration fields Switchyard does not use, and why: the agent names every
// such field that is set (to other than kube-proxy's default) in one start-up warning, so no
// field is silently ignored. Every other field has its effect on the agent's settings
// (control/cli/agent.ts agentSettings); test/config/field-use.test.ts walks every field of the
// schema and checks that each one is either here or changes those settings. Pure.
import { defaultKubeProxyConfiguration, kubeProxyFields } from './kube-proxy-config.ts';

type Dict = Record<string, unknown>;
const at = (o: Dict, path: string): unknown => path.split('.').reduce<unknown>((v, k) => (v !== null && typeof v === 'object' ? (v as Dict)[k] : undefined), o);

/** The proxy modes as the agent runs them. */
export type RunMode = 'ebpf' | 'iptables' | 'nftables' | 'ipvs' | 'kernelspace';

const RULE_MODES: readonly RunMode[] = ['iptables', 'nftables', 'ipvs'];
const EBPF_NO_MIN_SYNC = 'eBPF mode applies every change at once (map updates, no rule set to rewrite)';
const LOGGING = 'log lines are written unbuffered to stderr, one verbosity for the whole process';

/** Fields no mode uses, with the reason. */
const NEVER: Readonly<Record<string, string>> = {
  featureGates: 'Switchyard has no feature gates; every feature it has is on',
  'clientConnection.acceptContentTypes': 'the Accept header follows clientConnection.contentType',
  'logging.flushFrequency': LOGGING,
  'logging.vmodule': LOGGING,
  'logging.options.text.infoBufferSize': LOGGING,
  'logging.options.text.splitStream': LOGGING,
  'logging.options.json.infoBufferSize': LOGGING,
  'logging.options.json.splitStream': LOGGING,
  enableProfiling: 'no pprof in Node.js; use --inspect or the metrics server instead',
  showHiddenMetricsForVersion: 'Switchyard hides no metrics',
  'ipvs.excludeCIDRs': 'Switchyard only removes IPVS virtual servers it made',
  'ipvs.strictARP': 'Switchyard does not change ARP sysctls',
  portRange: "the userspace proxy's port range: there is no userspace mode",
};

const section = (mode: RunMode, fields: readonly string[], used: readonly RunMode[], why: string): Record<string, string | undefined> =>
  Object.fromEntries(fields.map((f) => [f, used.includes(mode) ? undefined : why]));

/** Fields some modes use: the reason when `mode` does not. */
function byMode(mode: RunMode, kp: Dict, sy: Dict): Record<string, string | undefined> {
  const loopbackNodePorts =
    mode === 'nftables' ? "nftables mode does not serve NodePorts on localhost (as kube-proxy's nftables mode)"
    : mode === 'ipvs' ? 'ipvs mode does not serve NodePorts on localhost'
    : mode === 'kernelspace' ? 'kernelspace mode does not serve NodePorts on localhost'
    : mode === 'ebpf' && (sy.socketLB === false || typeof sy.cgroupRoot !== 'string' || sy.cgroupRoot === '') ? 'eBPF mode serves 127.0.0.1:NodePort from its socket hooks, which are off (set cgroupRoot in the SwitchyardConfiguration)'
    : undefined;
  // Set: a duration other than 0 ("0s", "0m0s" are unset), as syncPeriods reads it.
  const topLevel = (path: string): boolean => typeof at(kp, path) === 'string' && /[1-9]/.test(String(at(kp, path)));
  return {
    'iptables.localhostNodePorts': loopbackNodePorts,
    'iptables.masqueradeBit': mode === 'iptables' || mode === 'ipvs' ? undefined : mode === 'nftables' ? 'nftables mode uses nftables.masqueradeBit' : `${mode} mode marks no packets for masquerading`,
    ...section(mode, ['iptables.syncPeriod', 'iptables.minSyncPeriod'], ['iptables', 'ebpf', 'kernelspace'], `${mode} mode takes its sync periods from its own section (${mode}.syncPeriod/minSyncPeriod) or the top-level ones`),
    ...section(mode, ['nftables.syncPeriod', 'nftables.minSyncPeriod', 'nftables.masqueradeBit'], ['nftables'], 'applies in nftables mode only'),
    ...section(mode, ['ipvs.syncPeriod', 'ipvs.minSyncPeriod', 'ipvs.scheduler', 'ipvs.tcpTimeout', 'ipvs.tcpFinTimeout', 'ipvs.udpTimeout'], ['ipvs'], 'applies in ipvs mode only'),
    ...section(mode, ['winkernel.networkName', 'winkernel.sourceVip', 'winkernel.enableDSR', 'winkernel.rootHnsEndpointName', 'winkernel.forwardHealthCheckVip'], ['kernelspace'], 'applies in kernelspace (Windows) mode only'),
    // The rule modes set the nf_conntrack sysctls (as kube-proxy); eBPF mode sizes and times its own table.
    ...section(mode, ['conntrack.maxPerCore', 'conntrack.min', 'conntrack.tcpEstablishedTimeout', 'conntrack.tcpCloseWaitTimeout', 'conntrack.udpTimeout', 'conntrack.udpStreamTimeout'], ['ebpf', ...RULE_MODES], `${mode} mode neither tracks connections itself nor sets the nf_conntrack sysctls`),
    ...section(mode, ['conntrack.tcpBeLiberal'], RULE_MODES, mode === 'ebpf' ? "eBPF mode's own connection tracking does not check TCP windows, and it does not set nf_conntrack_tcp_be_liberal" : `${mode} mode does not set nf_conntrack_tcp_be_liberal`),
    // A mode section's sync period is overridden by a top-level one that is set.
    ...(topLevel('syncPeriod') ? Object.fromEntries(['iptables', 'nftables', 'ipvs'].map((s) => [`${s}.syncPeriod`, 'the top-level syncPeriod is set and takes precedence'])) : {}),
    ...(topLevel('minSyncPeriod') ? Object.fromEntries(['iptables', 'nftables', 'ipvs'].map((s) => [`${s}.minSyncPeriod`, 'the top-level minSyncPeriod is set and takes precedence'])) : {}),
    // eBPF mode applies every change at once: a map update per change, no rule set to rewrite.
    ...(mode === 'ebpf' ? { 'iptables.minSyncPeriod': EBPF_NO_MIN_SYNC, minSyncPeriod: EBPF_NO_MIN_SYNC } : {}),
  };
}

/** Why `path` has no effect in `mode`, or undefined when it has one. */
export function ignoredBecause(path: string, mode: RunMode, kp: Dict = {}, sy: Dict = {}): string | undefined {
  return NEVER[path] ?? byMode(mode, kp, sy)[path];
}

/** Fields that are named even at kube-proxy's default value: the default itself is not served. */
const EVEN_AT_DEFAULT: ReadonlySet<string> = new Set(['iptables.localhostNodePorts']);

/**
 * The fields of this configuration that have no effect in `mode`: each set to other than
 * kube-proxy's default (or, for those in EVEN_AT_DEFAULT, also at it), with the reason.
 */
export function ignoredFields(kp: Dict, mode: RunMode, sy: Dict = {}): Array<{ field: string; why: string }> {
  const defaults = defaultKubeProxyConfiguration();
  const out: Array<{ field: string; why: string }> = [];
  for (const { path } of kubeProxyFields()) {
    if (path === 'apiVersion' || path === 'kind') continue;
    const why = ignoredBecause(path, mode, kp, sy);
    if (why === undefined) continue;
    const value = at(kp, path);
    const unset = value === undefined || value === null || (Array.isArray(value) && value.length === 0) || (typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 0);
    const isDefault = unset || JSON.stringify(value) === JSON.stringify(at(defaults, path));
    if (isDefault && !(EVEN_AT_DEFAULT.has(path) && value !== false)) continue;
    out.push({ field: path, why });
  }
  return out.sort((a, b) => (a.field < b.field ? -1 : 1));
}

/** The one start-up warning's text, or undefined when every field set is used. */
export function ignoredFieldsMessage(ignored: ReadonlyArray<{ field: string; why: string }>, mode: RunMode): string | undefined {
  if (ignored.length === 0) return undefined;
  return `KubeProxyConfiguration fields not used in ${mode} mode: ${ignored.map((i) => `${i.field} (${i.why})`).join('; ')}`;
}
