// Values checked before anything touches the kernel (and before --write-config-to writes a
// file): the decoder checks types and field names, this checks what the values mean, as
// kube-proxy's validation.Validate does. Each problem names its field; all are reported at once.
// Pure.
import { canonicalIp, parseCidr } from '../model/ip.ts';
import { ConfigError, type LoadedConfiguration } from './kube-proxy-config.ts';

type Dict = Record<string, unknown>;
const at = (o: Dict, path: string): unknown => path.split('.').reduce<unknown>((v, k) => (v !== null && typeof v === 'object' ? (v as Dict)[k] : undefined), o);

export const CONFIG_PROXY_MODES = ['', 'ebpf', 'nftables', 'iptables', 'ipvs', 'auto'] as const;
export const CONFIG_DETECT_LOCAL_MODES = ['', 'ClusterCIDR', 'NodeCIDR', 'BridgeInterface', 'InterfaceNamePrefix', 'None'] as const;
export const IPVS_SCHEDULERS = ['', 'rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'dh', 'sh', 'sed', 'nq', 'mh'] as const;
const DURATION = /^((\d+(\.\d+)?)(ns|us|µs|ms|s|m|h))+$|^0$/;

function oneOf(problems: string[], path: string, value: unknown, allowed: readonly string[]): void {
  if (value === undefined || value === null) return;
  if (!allowed.includes(String(value))) problems.push(`${path}: ${JSON.stringify(value)} is not one of ${allowed.filter((a) => a !== '').join(', ')}`);
}

function ipPort(problems: string[], path: string, value: unknown): void {
  if (value === undefined || value === null || value === '') return; // empty: that server is off
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(String(value)) ?? /^([^:]*):(\d+)$/.exec(String(value));
  if (m === null || (m[1] !== '' && canonicalIp(m[1]!) === undefined) || Number(m[2]) > 65535) problems.push(`${path}: ${JSON.stringify(value)} is not IP:port`);
}

function intRange(problems: string[], path: string, value: unknown, lo: number, hi: number): void {
  if (value === undefined || value === null) return;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < lo || value > hi) problems.push(`${path}: ${JSON.stringify(value)} is not an integer in [${lo}, ${hi}]`);
}

/** Every problem of the configuration, or none. */
export function configurationProblems(c: LoadedConfiguration): string[] {
  const kp = c.kubeProxy;
  const sy = c.switchyard;
  const p: string[] = [];
  const mode = at(kp, 'mode');
  // kernelspace is valid; the start says it needs Windows when it runs elsewhere.
  if (mode !== 'kernelspace') oneOf(p, 'mode', mode, CONFIG_PROXY_MODES);
  oneOf(p, 'detectLocalMode', at(kp, 'detectLocalMode'), CONFIG_DETECT_LOCAL_MODES);
  oneOf(p, 'ipvs.scheduler', at(kp, 'ipvs.scheduler'), IPVS_SCHEDULERS);
  oneOf(p, 'logging.format', at(kp, 'logging.format'), ['', 'text', 'json']);
  intRange(p, 'logging.verbosity', at(kp, 'logging.verbosity'), 0, 2 ** 31 - 1);
  intRange(p, 'oomScoreAdj', at(kp, 'oomScoreAdj'), -1000, 1000);
  intRange(p, 'iptables.masqueradeBit', at(kp, 'iptables.masqueradeBit'), 0, 31);
  intRange(p, 'nftables.masqueradeBit', at(kp, 'nftables.masqueradeBit'), 0, 31);
  intRange(p, 'clientConnection.burst', at(kp, 'clientConnection.burst'), 0, 2 ** 31 - 1);
  const qps = at(kp, 'clientConnection.qps');
  if (qps !== undefined && qps !== null && (typeof qps !== 'number' || qps < 0)) p.push(`clientConnection.qps: ${JSON.stringify(qps)} is not a number >= 0`);
  ipPort(p, 'healthzBindAddress', at(kp, 'healthzBindAddress'));
  ipPort(p, 'metricsBindAddress', at(kp, 'metricsBindAddress'));
  const bind = at(kp, 'bindAddress');
  if (typeof bind === 'string' && bind !== '' && canonicalIp(bind) === undefined) p.push(`bindAddress: ${JSON.stringify(bind)} is not an IP address`);
  const host = at(kp, 'hostnameOverride');
  if (typeof host === 'string' && host !== '' && host.trim() === '') p.push('hostnameOverride: empty hostname-override is invalid');
  const cidrs = [...String(at(kp, 'clusterCIDR') ?? '').split(','), ...((at(kp, 'detectLocal.clusterCIDRs') as string[] | null | undefined) ?? [])].map((s) => s.trim()).filter((s) => s !== '');
  for (const cidr of cidrs) if (parseCidr(cidr) === undefined) p.push(`clusterCIDR: ${JSON.stringify(cidr)} is not a CIDR`);
  const npa = (at(kp, 'nodePortAddresses') as string[] | null | undefined) ?? [];
  if (!(npa.length === 1 && npa[0] === 'primary')) for (const a of npa) if (parseCidr(a) === undefined) p.push(`nodePortAddresses: ${JSON.stringify(a)} is not a CIDR (or the single value "primary")`);
  for (const path of ['iptables.syncPeriod', 'iptables.minSyncPeriod', 'nftables.syncPeriod', 'nftables.minSyncPeriod', 'ipvs.syncPeriod', 'ipvs.minSyncPeriod', 'ipvs.tcpTimeout', 'ipvs.tcpFinTimeout', 'ipvs.udpTimeout', 'configSyncPeriod']) {
    const v = at(kp, path);
    if (v !== undefined && v !== null && !DURATION.test(String(v))) p.push(`${path}: ${JSON.stringify(v)} is not a duration such as 30s or 1m`);
  }
  oneOf(p, 'loadBalancing.algorithm', at(sy, 'loadBalancing.algorithm'), ['random', 'maglev']);
  oneOf(p, 'xdpMode', at(sy, 'xdpMode') ?? 'auto', ['native', 'generic', 'auto', 'off']);
  for (const c of (at(sy, 'serviceCIDRs') as string[] | null | undefined) ?? []) if (parseCidr(c) === undefined) p.push(`serviceCIDRs: ${JSON.stringify(c)} is not a CIDR`);
  const bpffs = at(sy, 'bpffsDir');
  if (typeof bpffs !== 'string' || !bpffs.startsWith('/')) p.push(`bpffsDir: ${JSON.stringify(bpffs)} is not an absolute path`);
  return p;
}

/** Throws one ConfigError listing every problem. */
export function validateConfiguration(c: LoadedConfiguration): void {
  const problems = configurationProblems(c);
  if (problems.length > 0) throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
}
