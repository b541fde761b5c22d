// switchyard (the agent): kube-proxy's flags where they apply, kube-proxy's configuration file
// (--config, --write-config-to), plus Switchyard's own settings. Flags given on the command line
// override the file; the file overrides the defaults.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, hostname } from 'node:os';
import { applyConntrackSysctls, conntrackSysctls, type ConntrackSysctl } from '../backends/conntrack-sysctls.ts';
import { toolRunner } from '../backends/tool-runner.ts';
import type { Logger } from 'pino';
import { Agent, type AgentOptions, type SourceOptions } from '../agent/agent.ts';
import { ignoredBecause, ignoredFields, ignoredFieldsMessage, type RunMode } from '../config/field-use.ts';
import type { ModelConfig } from '../model/types.ts';
import { ConfigError, decodeConfiguration, defaultKubeProxyConfiguration, defaultSwitchyardConfiguration, encodeConfiguration, type LoadedConfiguration } from '../config/kube-proxy-config.ts';
import { cleanupEbpf } from '../backends/ebpf/cleanup.ts';
import { cleanupIptables } from '../backends/iptables/cleanup.ts';
import { cleanupNftables } from '../backends/nftables/cleanup.ts';
import { SCHEDULERS } from '../backends/ipvs/compile.ts';
import { cleanupIpvs } from '../backends/ipvs/cleanup.ts';
import { chooseMode, probeKernel } from '../backends/probe.ts';
import { healthzPort, winkernelConfig } from '../backends/hns/winkernel-config.ts';
import type { CommandIO } from './io.ts';
import type { KubeProxyConntrack } from '../backends/ebpf/conntrack.ts';
import { modelConfigFromFlags, type ModelFlagValues } from './model-flags.ts';
import { validateConfiguration } from '../config/validate.ts';
import { AGENT_FLAGS, applyAgentFlags, flagFieldPaths, unusedFlagsGiven, type AgentFlagValues } from './agent-flags.ts';
import { command, commandHelp, VERSION } from './commands.ts';
import { FlagError, parseFlags, type FlagValue } from './flags.ts';
import { createLogger } from './logger.ts';
import { bindProblem, resolveSource } from './preflight.ts';
import { explain } from './explain.ts';


/** CPUs for conntrack.maxPerCore (kube-proxy: the machine's). */
const cpus = (): number => availableParallelism();

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
/** kube-proxy's conntrack section as the eBPF datapath takes it (durations in seconds; 0: the default). */
export function conntrackOf(kp: Dict): KubeProxyConntrack {
  const seconds = (path: string): number => Math.round(parseDuration(String(at(kp, path) ?? '0s'), path) / 1000);
  return {
    maxPerCore: Number(at(kp, 'conntrack.maxPerCore') ?? 32768),
    min: Number(at(kp, 'conntrack.min') ?? 131072),
    tcpEstablishedTimeoutSeconds: seconds('conntrack.tcpEstablishedTimeout'),
    tcpCloseWaitTimeoutSeconds: seconds('conntrack.tcpCloseWaitTimeout'),
    udpTimeoutSeconds: seconds('conntrack.udpTimeout'),
    udpStreamTimeoutSeconds: seconds('conntrack.udpStreamTimeout'),
  };
}

/** "MIN-MAX", both within 1..65535. */
export function snatPortsOf(v: unknown): { min: number; max: number } {
  const m = /^(\d+)-(\d+)$/.exec(String(v ?? '1024-65535'));
  const min = Number(m?.[1]);
  const max = Number(m?.[2]);
  if (m === null || min < 1 || max > 65535 || min > max) throw new Error(`snatPorts: "MIN-MAX" within 1-65535, not ${JSON.stringify(v)}`);
  return { min, max };
}

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
  // The top-level fields (kube-proxy 1.34's), when set to other than 0, win over the mode's.
  const pick = (name: 'syncPeriod' | 'minSyncPeriod', fallback: string): [string, string] => {
    const top = at(kp, name);
    if (typeof top === 'string' && parseDuration(top, name) > 0) return [top, name];
    return [String(at(kp, `${section}.${name}`) ?? fallback), `${section}.${name}`];
  };
  const [sync, syncPath] = pick('syncPeriod', '30s');
  const [min, minPath] = pick('minSyncPeriod', mode === 'ipvs' ? '0s' : '1s');
  return { syncPeriodMs: parseDuration(sync, syncPath), minSyncPeriodMs: parseDuration(min, minPath) };
}

/** What the API client is asked for, from clientConnection. */
function sourceRequest(kp: Dict): { kubeconfig?: string; contentType: 'json' | 'protobuf'; qps: number; burst: number } {
  const contentType = String(at(kp, 'clientConnection.contentType') ?? '');
  return {
    kubeconfig: str(at(kp, 'clientConnection.kubeconfig')),
    contentType: contentType.includes('json') ? 'json' : 'protobuf',
    qps: Number(at(kp, 'clientConnection.qps') || 5),
    burst: Number(at(kp, 'clientConnection.burst') || 10),
  };
}

/** The model's configuration in `mode`: kube-proxy's fields that shape the model (checked: throws naming a bad value). */
function modelSettings(c: LoadedConfiguration, mode: RunMode, ipFamilies: readonly string[] | undefined): ModelConfig {
  const kp = c.kubeProxy;
  const sy = c.switchyard;
  const npa = (kp.nodePortAddresses as string[] | null) ?? [];
  const modelFlags: ModelFlagValues = {
    'cluster-cidr': [str(kp.clusterCIDR), ...((at(kp, 'detectLocal.clusterCIDRs') as string[] | null | undefined) ?? [])].filter((x) => x !== undefined).join(','),
    'detect-local-mode': str(kp.detectLocalMode),
    'pod-bridge-interface': str(at(kp, 'detectLocal.bridgeInterface')),
    'pod-interface-name-prefix': str(at(kp, 'detectLocal.interfaceNamePrefix')),
    // kube-proxy's nftables mode takes an unset nodePortAddresses as "primary" (the node IPs only).
    'nodeport-addresses': (npa.length === 0 && mode === 'nftables' ? ['primary'] : npa).join(','),
    'masquerade-all': Boolean(at(kp, 'iptables.masqueradeAll')) || Boolean(at(kp, 'nftables.masqueradeAll')),
    'ip-families': ipFamilies?.join(','),
  };
  // Only where the mode has the field's effect (else the start-up warning names it).
  const localhost = ignoredBecause('iptables.localhostNodePorts', mode, kp, sy) === undefined && at(kp, 'iptables.localhostNodePorts') !== false;
  const bitPath = mode === 'nftables' ? 'nftables.masqueradeBit' : 'iptables.masqueradeBit';
  const bit = ignoredBecause(bitPath, mode, kp, sy) === undefined ? Number(at(kp, bitPath) ?? 14) : 14;
  const serviceCIDRs = (sy.serviceCIDRs as string[] | null | undefined) ?? [];
  return { ...modelConfigFromFlags(modelFlags), localhostNodePorts: localhost, masqueradeBit: bit, serviceCIDRs, defaultAlgorithm: at(sy, 'loadBalancing.algorithm') as 'random' | 'maglev' };
}

/** What the agent runs with, but for the logger and the resolved source. */
export interface AgentSettings {
  /** The mode asked for (chooseMode turns auto into one). */
  requestedMode: string;
  logging: { format: 'json' | 'text'; verbosity: number };
  source: ReturnType<typeof sourceRequest> & { viaClusterIP: boolean; serviceCIDRs: readonly string[] };
  oomScoreAdj: unknown;
  /** The nf_conntrack sysctls set at start (the rule-based modes, as kube-proxy). */
  conntrackSysctls: ConntrackSysctl[];
  agent: Omit<AgentOptions, 'logger' | 'source' | 'configz'>;
}

/**
 * Everything the configuration decides for a run in `mode`, derived in one place (pure but for
 * the hostname default): the agent is built from it, and the field-use test compares it field by
 * field to tell a field that has its effect from one that is named in the start-up warning.
 */
export function agentSettings(c: LoadedConfiguration, mode: RunMode, ipFamilies?: readonly string[]): AgentSettings {
  const kp = c.kubeProxy;
  const sy = c.switchyard;
  const mapSizes = (sy.mapSizes ?? {}) as Record<string, number | undefined>;
  const maxEntries = Object.fromEntries(
    Object.entries({ sy_frontends: mapSizes.frontends, sy_service_addrs: mapSizes.frontends, sy_backends: mapSizes.backends, sy_slots: mapSizes.slots, sy_ct: mapSizes.conntrack, sy_affinity: mapSizes.affinity, sy_source_ranges: mapSizes.sourceRanges, sy_frags: mapSizes.fragments }).filter(([, v]) => v !== undefined),
  ) as Record<string, number>;
  const periods = syncPeriods(kp, mode);
  const cgroup = sy.socketLB === false ? undefined : str(sy.cgroupRoot);
  const backend: AgentOptions['backend'] =
    mode === 'kernelspace' ? { mode: 'kernelspace', minSyncPeriodMs: periods.minSyncPeriodMs, winkernel: winkernelConfig(kp), healthzPort: healthzPort(kp) }
    : mode === 'iptables' || mode === 'nftables' ? { mode, minSyncPeriodMs: periods.minSyncPeriodMs }
    : mode === 'ipvs' ? ipvsBackend(kp, periods.minSyncPeriodMs)
    : {
        mode: 'ebpf',
        pinDir: String(sy.bpffsDir),
        maxEntries,
        podDevicePrefixes: (sy.podDevicePrefixes as string[] | null) ?? [],
        externalDevices: (sy.externalDevices as string[] | null) ?? [],
        cgroup,
        xdpMode: xdpModeOf(sy.xdpMode),
        conntrack: conntrackOf(kp),
        snatPorts: snatPortsOf(sy.snatPorts),
      };
  return {
    requestedMode: str(kp.mode) ?? 'ebpf',
    logging: { format: at(kp, 'logging.format') === 'json' ? 'json' : 'text', verbosity: Number(at(kp, 'logging.verbosity') ?? 0) },
    source: { ...sourceRequest(kp), viaClusterIP: sy.apiServerViaClusterIP === true, serviceCIDRs: (sy.serviceCIDRs as string[] | null | undefined) ?? [] },
    oomScoreAdj: kp.oomScoreAdj,
    conntrackSysctls: mode === 'iptables' || mode === 'nftables' || mode === 'ipvs' ? conntrackSysctls({ ...conntrackOf(kp), tcpBeLiberal: at(kp, 'conntrack.tcpBeLiberal') === true }, cpus()) : [],
    agent: {
      nodeName: str(kp.hostnameOverride) ?? hostname().toLowerCase(),
      model: modelSettings(c, mode, ipFamilies),
      backend,
      healthzBindAddress: str(kp.healthzBindAddress),
      metricsBindAddress: str(kp.metricsBindAddress),
      bindAddressHardFail: kp.bindAddressHardFail === true,
      syncPeriodMs: periods.syncPeriodMs,
      configSyncPeriodMs: parseDuration(String(kp.configSyncPeriod ?? '15m0s'), 'configSyncPeriod'),
      bindAddress: str(kp.bindAddress),
    },
  };
}

/**
 * The configuration in effect: the file (or kube-proxy's defaults) with the flags given on top.
 * Takes the parser's values, or a plain record of them (strings for list flags are split).
 */
export function effectiveConfiguration(given: AgentFlagValues | Readonly<Record<string, FlagValue | undefined>>): LoadedConfiguration {
  const values = new Map<string, FlagValue>();
  for (const [k, v] of given instanceof Map ? given : Object.entries(given)) {
    if (v === undefined) continue;
    const spec = AGENT_FLAGS.find((s) => s.name === k);
    values.set(k, spec?.type === 'strings' && typeof v === 'string' ? list(v) : v);
  }
  const file = values.get('config') as string | undefined;
  const loaded = file === undefined ? { kubeProxy: defaultKubeProxyConfiguration(), switchyard: defaultSwitchyardConfiguration() } : decodeConfiguration(readConfigFile(file));
  const kp = structuredClone(loaded.kubeProxy);
  const sy = structuredClone(loaded.switchyard);
  applyAgentFlags(values, kp, sy, file !== undefined);
  return { kubeProxy: kp, switchyard: sy };
}

function readConfigFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`--config ${path}: ${(e as Error).message}`);
  }
}

async function cleanupAll(sy: Dict, io: CommandIO): Promise<number> {
  // Like kube-proxy's --cleanup: whatever any mode left, gone.
  const report = await cleanupEbpf({ pinDir: String(sy.bpffsDir), cgroup: str(sy.cgroupRoot) });
  const iptables = await cleanupIptables();
  const nftables = await cleanupNftables();
  const ipvs = await cleanupIpvs(); // after iptables: its ipsets are free once no rule names them
  io.stdout(`${JSON.stringify({ ...report, iptables, nftables, ipvs })}\n`);
  return 0;
}

/** `switchyard cleanup`: its own few flags, then the agent's cleanup. */
export async function cleanupCommand(argv: string[], io: CommandIO): Promise<number> {
  const spec = command('cleanup');
  const { values, args } = parseFlags(argv, spec.flags);
  if (args.length > 0) throw new FlagError(`cleanup takes no arguments, got "${args[0]}"`);
  if (values.get('help') === true) {
    io.stdout(commandHelp(spec));
    return 0;
  }
  return cleanupAll(effectiveConfiguration(values).switchyard, io);
}

function pinsPresent(dir: string): boolean {
  try {
    return readdirSync(dir).length > 0;
  } catch {
    return false;
  }
}

/** Sets the process's oom_score_adj as kube-proxy does; a refusal is logged, not fatal. */
function applyOomScoreAdj(value: unknown, log: Logger): void {
  if (typeof value !== 'number') return;
  try {
    writeFileSync('/proc/self/oom_score_adj', String(value));
  } catch (e) {
    log.warn({ value, err: e as Error }, 'could not set oom_score_adj');
  }
}

export async function agentCommand(argv: string[], io: CommandIO): Promise<number> {
  const spec = command('agent');
  const { values, args, warnings } = parseFlags(argv, spec.flags);
  if (args.length > 0) throw new FlagError(`the agent takes no arguments, got "${args[0]}"`);
  if (values.get('help') === true) {
    io.stdout(commandHelp(spec));
    return 0;
  }
  if (values.get('version') === true) {
    io.stdout(`switchyard ${VERSION}\n`);
    return 0;
  }
  for (const w of warnings) io.stderr(`${w}\n`);
  const effective = effectiveConfiguration(values);
  validateConfiguration(effective);
  const writeTo = values.get('write-config-to') as string | undefined;
  if (writeTo !== undefined) {
    writeFileSync(writeTo, encodeConfiguration(effective));
    io.stdout(`wrote the configuration to ${writeTo}\n`);
    return 0;
  }
  const kp = effective.kubeProxy;
  const sy = effective.switchyard;
  if (values.get('cleanup') === true) return cleanupAll(sy, io);
  // Switchyard's default mode is ebpf (kube-proxy's "" means iptables; ours means the default).
  const requested = str(kp.mode) ?? 'ebpf';
  if (requested === 'kernelspace' && process.platform !== 'win32') {
    io.stderr(`switchyard: --proxy-mode kernelspace needs Windows: it programs HNS/HCN load balancers through computenetwork.dll, which exists only there (this is ${process.platform}; use ebpf, nftables, iptables or ipvs)\n`);
    return 1;
  }
  const logger = createLogger({ format: at(kp, 'logging.format') === 'json' ? 'json' : 'text', verbosity: Number(at(kp, 'logging.verbosity') ?? 0) });
  const unused = unusedFlagsGiven(values);
  if (unused.length > 0) logger.warn({ flags: unused.map((f) => `--${f.name}`) }, `flags accepted but not used by Switchyard: ${unused.map((f) => `--${f.name} (${f.unused})`).join('; ')}`);
  const request = sourceRequest(kp);
  const resolved = resolveSource({ manifests: values.get('manifests') as string | undefined, master: values.get('master') as string | undefined, ...request });
  const source: SourceOptions = resolved.kind === 'kube' ? { ...resolved, viaClusterIP: sy.apiServerViaClusterIP === true, serviceCIDRs: [...((sy.serviceCIDRs as string[] | null | undefined) ?? [])] } : resolved;
  modelSettings(effective, 'ebpf', values.get('ip-families') as string[] | undefined); // checked before anything else runs
  if (values.get('init-only') === true) {
    logger.info('configuration and sources checked (--init-only); Switchyard has no separate privileged initialisation');
    return 0;
  }
  // A busy port is fatal (another proxy still runs); other bind problems are so with
  // --bind-address-hard-fail. Checked here, before the kernel is probed; bound for real below.
  for (const [what, address] of [['health checks', str(kp.healthzBindAddress)], ['metrics', str(kp.metricsBindAddress)]] as const) {
    if (address === undefined) continue;
    const code = await bindProblem(address);
    if (code === 'EADDRINUSE' || (code !== undefined && kp.bindAddressHardFail === true)) {
      io.stderr(`switchyard: serving ${what} on ${address}: ${code === 'EADDRINUSE' ? 'address already in use (is kube-proxy or another agent still running?)' : code}\n`);
      return 1;
    }
  }
  // Everything above only read files and tried ports; from here on the kernel is probed and programmed.
  applyOomScoreAdj(kp.oomScoreAdj, logger);
  const choice = requested === 'kernelspace' ? { mode: 'kernelspace' as const, why: 'kernelspace requested: HNS load balancers (Windows)' } : chooseMode(requested, await probeKernel());
  if (choice instanceof Error) {
    io.stderr(`switchyard: ${explain(choice)}\n`);
    return 1;
  }
  const settings = agentSettings(effective, choice.mode, values.get('ip-families') as string[] | undefined);
  // Fields no mode uses and set by a flag were named with the flag already.
  const namedWithFlag = new Set(unused.flatMap((f) => flagFieldPaths(f.name)));
  const ignored = ignoredFields(kp, choice.mode, sy).filter((f) => !namedWithFlag.has(f.field));
  const ignoredMessage = ignoredFieldsMessage(ignored, choice.mode);
  if (ignoredMessage !== undefined) logger.warn({ fields: ignored.map((f) => f.field) }, ignoredMessage);
  const pinDir = String(sy.bpffsDir);
  const cgroup = sy.socketLB === false ? undefined : str(sy.cgroupRoot);
  const pinnedBefore = pinsPresent(pinDir);
  if (settings.conntrackSysctls.length > 0) {
    const r = await applyConntrackSysctls(settings.conntrackSysctls, toolRunner());
    if (r.set.length > 0) logger.info({ sysctls: r.set }, 'set the nf_conntrack sysctls from the conntrack section');
    if (r.skipped.length > 0) logger.warn({ skipped: r.skipped }, `could not set ${r.skipped.map((x) => x.name).join(', ')} (read-only /proc/sys, or not this network namespace's to set); connection tracking keeps the node's values`);
  }
  const agent = new Agent({ ...settings.agent, source, logger, configz: effective });
  logger.info({ mode: choice.mode }, choice.why);
  const stopped = new Promise<string>((resolve) => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => resolve(signal));
  });
  try {
    await agent.start();
  } catch (e) {
    // One line, then nothing left behind: servers closed, children killed, and what this start
    // pinned and attached removed (a datapath adopted from an earlier run stays, still forwarding).
    await agent.stop().catch(() => undefined);
    // A cgroup that cannot be queried (the cause of the failure, maybe) must not keep the pins.
    if (choice.mode === 'ebpf' && !pinnedBefore) await cleanupEbpf({ pinDir, cgroup }).catch(() => cleanupEbpf({ pinDir })).catch(() => undefined);
    io.stderr(`switchyard: ${explain(e)}\n`);
    return 1;
  }
  const signal = await stopped;
  logger.info({ signal }, 'stopping; the datapath stays in place');
  await agent.stop();
  return 0;
}
