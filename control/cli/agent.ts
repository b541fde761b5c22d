// switchyard (the agent): kube-proxy's flags where they apply, kube-proxy's configuration file
// (--config, --write-config-to), plus Switchyard's own settings. Flags given on the command line
// override the file; the file overrides the defaults.
import { readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { Agent, type SourceOptions } from '../agent/agent.ts';
import { decodeConfiguration, defaultKubeProxyConfiguration, defaultSwitchyardConfiguration, encodeConfiguration, type LoadedConfiguration } from '../config/kube-proxy-config.ts';
import { cleanupEbpf } from '../backends/ebpf/cleanup.ts';
import { cleanupIptables } from '../backends/iptables/cleanup.ts';
import { cleanupNftables } from '../backends/nftables/cleanup.ts';
import { SCHEDULERS } from '../backends/ipvs/compile.ts';
import { cleanupIpvs } from '../backends/ipvs/cleanup.ts';
import { chooseMode, probeKernel } from '../backends/probe.ts';
import type { CommandIO } from './io.ts';
import { MODEL_FLAG_OPTIONS, modelConfigFromFlags, type ModelFlagValues } from './model-flags.ts';


export const AGENT_OPTIONS = {
  config: { type: 'string' },
  'write-config-to': { type: 'string' },
  cleanup: { type: 'boolean' },
  'proxy-mode': { type: 'string' },
  'hostname-override': { type: 'string' },
  kubeconfig: { type: 'string' },
  master: { type: 'string' },
  'kube-api-content-type': { type: 'string' },
  manifests: { type: 'string' },
  'bpffs-dir': { type: 'string' },
  'pod-device-prefixes': { type: 'string' },
  'external-devices': { type: 'string' },
  'cgroup-root': { type: 'string' },
  'healthz-bind-address': { type: 'string' },
  'metrics-bind-address': { type: 'string' },
  'iptables-sync-period': { type: 'string' },
  'bind-address': { type: 'string' },
  'kube-api-qps': { type: 'string' },
  'kube-api-burst': { type: 'string' },
  'config-sync-period': { type: 'string' },
  'ipvs-scheduler': { type: 'string' },
  v: { type: 'string', short: 'v' },
  ...MODEL_FLAG_OPTIONS,
} as const;

type Dict = Record<string, unknown>;
const at = (o: Dict, path: string): unknown => path.split('.').reduce<unknown>((v, k) => (v !== null && typeof v === 'object' ? (v as Dict)[k] : undefined), o);
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const list = (s: string | undefined): string[] => (s ?? '').split(',').map((x) => x.trim()).filter((x) => x !== '');

function xdpModeOf(value: unknown): 'native' | 'generic' | 'auto' | 'off' {
  if (value === undefined || value === null || value === '') return 'auto';
  if (value === 'native' || value === 'generic' || value === 'auto' || value === 'off') return value;
  throw new Error(`xdpMode: native, generic, auto or off, not ${JSON.stringify(value)}`);
}

/** Go-style durations as kube-proxy's flags take them: "30s", "1m", "500ms", "1h30m0s". */
export function parseDuration(text: string, flag: string): number {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let rest = text.trim();
  if (rest === '' || rest === '0') return 0;
  while (rest !== '') {
    const m = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/.exec(rest);
    if (m === null) throw new Error(`${flag}: "${text}" is not a duration like 30s or 1m`);
    total += Number(m[1]) * units[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return total;
}

/** IPVS mode's settings from the ipvs section, checked. */
function ipvsBackend(kp: Dict, minSyncPeriodMs: number): { mode: 'ipvs'; minSyncPeriodMs: number; scheduler: string; timeouts: { tcp: number; tcpFin: number; udp: number } } {
  const scheduler = str(at(kp, 'ipvs.scheduler')) ?? 'rr';
  if (!SCHEDULERS.has(scheduler)) throw new Error(`ipvs.scheduler: one of ${[...SCHEDULERS].join(', ')}, not ${JSON.stringify(scheduler)}`);
  const seconds = (path: string): number => Math.round(parseDuration(String(at(kp, path) ?? '0s'), path) / 1000);
  return { mode: 'ipvs', minSyncPeriodMs, scheduler, timeouts: { tcp: seconds('ipvs.tcpTimeout'), tcpFin: seconds('ipvs.tcpFinTimeout'), udp: seconds('ipvs.udpTimeout') } };
}

/**
 * The sync periods of the chosen mode: its own section of the configuration (nftables.syncPeriod
 * in nftables mode; iptables' for ebpf, whose health timeout kube-proxy users set there).
 */
export function syncPeriods(kp: Dict, mode: string): { syncPeriodMs: number; minSyncPeriodMs: number } {
  const section = mode === 'nftables' || mode === 'ipvs' ? mode : 'iptables';
  return {
    syncPeriodMs: parseDuration(String(at(kp, `${section}.syncPeriod`) ?? '30s'), `${section}.syncPeriod`),
    minSyncPeriodMs: parseDuration(String(at(kp, `${section}.minSyncPeriod`) ?? (mode === 'ipvs' ? '0s' : '1s')), `${section}.minSyncPeriod`),
  };
}

/** The configuration in effect: the file (or kube-proxy's defaults) with explicit flags on top. */
export function effectiveConfiguration(values: Partial<Record<keyof typeof AGENT_OPTIONS, string | boolean>>): LoadedConfiguration {
  const loaded = values.config === undefined ? { kubeProxy: defaultKubeProxyConfiguration(), switchyard: defaultSwitchyardConfiguration() } : decodeConfiguration(readFileSync(String(values.config), 'utf8'));
  const kp = structuredClone(loaded.kubeProxy);
  const sy = structuredClone(loaded.switchyard);
  const set = (o: Dict, path: string, v: unknown): void => {
    if (v === undefined) return;
    const keys = path.split('.');
    let cur = o;
    for (const k of keys.slice(0, -1)) cur = (cur[k] ??= {}) as Dict;
    cur[keys.at(-1)!] = v;
  };
  set(kp, 'mode', values['proxy-mode']);
  set(kp, 'hostnameOverride', values['hostname-override']);
  set(kp, 'clientConnection.kubeconfig', values.kubeconfig);
  set(kp, 'clientConnection.contentType', values['kube-api-content-type']);
  set(kp, 'healthzBindAddress', values['healthz-bind-address']);
  set(kp, 'metricsBindAddress', values['metrics-bind-address']);
  set(kp, 'iptables.syncPeriod', values['iptables-sync-period']);
  set(kp, 'bindAddress', values['bind-address']);
  if (values['kube-api-qps'] !== undefined) set(kp, 'clientConnection.qps', Number(values['kube-api-qps']));
  if (values['kube-api-burst'] !== undefined) set(kp, 'clientConnection.burst', Number(values['kube-api-burst']));
  set(kp, 'configSyncPeriod', values['config-sync-period']);
  set(kp, 'ipvs.scheduler', values['ipvs-scheduler']);
  set(kp, 'iptables.masqueradeAll', values['masquerade-all']);
  set(kp, 'clusterCIDR', values['cluster-cidr']);
  set(kp, 'detectLocalMode', values['detect-local-mode']);
  set(kp, 'detectLocal.bridgeInterface', values['pod-bridge-interface']);
  set(kp, 'detectLocal.interfaceNamePrefix', values['pod-interface-name-prefix']);
  if (values['nodeport-addresses'] !== undefined) set(kp, 'nodePortAddresses', list(String(values['nodeport-addresses'])));
  set(sy, 'bpffsDir', values['bpffs-dir']);
  if (values['pod-device-prefixes'] !== undefined) set(sy, 'podDevicePrefixes', list(String(values['pod-device-prefixes'])));
  if (values['external-devices'] !== undefined) set(sy, 'externalDevices', list(String(values['external-devices'])));
  set(sy, 'cgroupRoot', values['cgroup-root']);
  return { kubeProxy: kp, switchyard: sy };
}

export async function agentCommand(argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseArgs({ args: argv, options: AGENT_OPTIONS, strict: true });
  const effective = effectiveConfiguration(values);
  if (values['write-config-to'] !== undefined) {
    writeFileSync(values['write-config-to'], encodeConfiguration(effective));
    io.stdout(`wrote the configuration to ${values['write-config-to']}\n`);
    return 0;
  }
  const kp = effective.kubeProxy;
  const sy = effective.switchyard;
  if (values.cleanup === true) {
    // Like kube-proxy's --cleanup: whatever any mode left, gone.
    const report = await cleanupEbpf({ pinDir: String(sy.bpffsDir), cgroup: str(sy.cgroupRoot) });
    const iptables = await cleanupIptables();
    const nftables = await cleanupNftables();
    const ipvs = await cleanupIpvs(); // after iptables: its ipsets are free once no rule names them
    io.stdout(`${JSON.stringify({ ...report, iptables, nftables, ipvs })}\n`);
    return 0;
  }
  // Switchyard's default mode is ebpf (kube-proxy's "" means iptables; ours means the default).
  const requested = str(kp.mode) ?? 'ebpf';
  const choice = chooseMode(requested, await probeKernel());
  if (choice instanceof Error) {
    io.stderr(`${choice.message}\n`);
    return 1;
  }
  const modelFlags: ModelFlagValues = {
    'cluster-cidr': [str(kp.clusterCIDR), ...((at(kp, 'detectLocal.clusterCIDRs') as string[] | null | undefined) ?? [])].filter((x) => x !== undefined).join(','),
    'detect-local-mode': str(kp.detectLocalMode),
    'pod-bridge-interface': str(at(kp, 'detectLocal.bridgeInterface')),
    'pod-interface-name-prefix': str(at(kp, 'detectLocal.interfaceNamePrefix')),
    'nodeport-addresses': ((kp.nodePortAddresses as string[] | null) ?? []).join(','),
    'masquerade-all': Boolean(at(kp, 'iptables.masqueradeAll')) || Boolean(at(kp, 'nftables.masqueradeAll')),
    'ip-families': values['ip-families'],
  };
  const model = modelConfigFromFlags(modelFlags);
  const algorithm = at(sy, 'loadBalancing.algorithm');
  if (algorithm !== 'random' && algorithm !== 'maglev') throw new Error(`loadBalancing.algorithm: random or maglev, not ${JSON.stringify(algorithm)}`);
  const verbosity = Number(values.v ?? at(kp, 'logging.verbosity') ?? 0);
  const logger = pino({ level: verbosity >= 4 ? 'debug' : 'info', base: { component: 'switchyard' } });
  const contentType = String(at(kp, 'clientConnection.contentType') ?? '');
  const source: SourceOptions =
    values.manifests !== undefined
      ? { kind: 'files', dir: values.manifests }
      : {
          kind: 'kube',
          kubeconfig: str(at(kp, 'clientConnection.kubeconfig')),
          master: values.master,
          contentType: contentType.includes('json') ? 'json' : 'protobuf',
          qps: Number(at(kp, 'clientConnection.qps') ?? 5),
          burst: Number(at(kp, 'clientConnection.burst') ?? 10),
          viaClusterIP: sy.apiServerViaClusterIP === true,
        };
  const mapSizes = (sy.mapSizes ?? {}) as Record<string, number | undefined>;
  const maxEntries = Object.fromEntries(
    Object.entries({ sy_frontends: mapSizes.frontends, sy_backends: mapSizes.backends, sy_slots: mapSizes.slots, sy_ct: mapSizes.conntrack, sy_affinity: mapSizes.affinity, sy_source_ranges: mapSizes.sourceRanges }).filter(([, v]) => v !== undefined),
  ) as Record<string, number>;
  const periods = syncPeriods(kp, choice.mode);
  const agent = new Agent({
    nodeName: str(kp.hostnameOverride) ?? hostname().toLowerCase(),
    model: { ...model, defaultAlgorithm: algorithm },
    source,
    backend: choice.mode === 'iptables' || choice.mode === 'nftables' ? { mode: choice.mode, minSyncPeriodMs: periods.minSyncPeriodMs } : choice.mode === 'ipvs' ? ipvsBackend(kp, periods.minSyncPeriodMs) : {
      mode: 'ebpf',
      pinDir: String(sy.bpffsDir),
      maxEntries,
      podDevicePrefixes: (sy.podDevicePrefixes as string[] | null) ?? [],
      externalDevices: (sy.externalDevices as string[] | null) ?? [],
      cgroup: sy.socketLB === false ? undefined : str(sy.cgroupRoot),
      xdpMode: xdpModeOf(sy.xdpMode),
    },
    logger,
    healthzBindAddress: str(kp.healthzBindAddress),
    metricsBindAddress: str(kp.metricsBindAddress),
    syncPeriodMs: periods.syncPeriodMs,
    configz: effective,
    configSyncPeriodMs: parseDuration(String(kp.configSyncPeriod ?? '15m0s'), 'configSyncPeriod'),
    bindAddress: str(kp.bindAddress),
  });
  logger.info({ mode: choice.mode }, choice.why);
  await agent.start();
  await new Promise<void>((resolve) => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => resolve());
  });
  logger.info('stopping; the datapath stays in place');
  await agent.stop();
  return 0;
}
