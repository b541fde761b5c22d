// The IPVS compiler: desired state -> what kube-proxy's IPVS mode keeps in the kernel.
// - kube-ipvs0, a dummy device holding every ClusterIP, external IP and load-balancer IP, so the
//   node accepts traffic for them and IPVS (at LOCAL_IN / LOCAL_OUT) takes it from there;
// - one virtual server per address:port/protocol (and per NodePort address), real servers in
//   masquerade mode, persistence for ClientIP affinity;
// - the ipsets and the few iptables rules kube-proxy's IPVS mode uses for masquerade, NodePorts,
//   source ranges, hairpin traffic and rejecting unserved ports of service addresses.
// Pure: plan.ts turns this and what the kernel lists into commands.
import { hostPort, type Family } from '../../model/ip.ts';
import { clusterIPMasquerade, planServicePort, SOURCE_CLASSES, type ServicePortPlan, type SourceDecisions } from '../../model/plan.ts';
import type { DesiredState, EndpointState, FamilyState, Protocol } from '../../model/types.ts';
import { masqueradeMark, type CompiledRules } from '../iptables/compile.ts';

export const DUMMY_DEVICE = 'kube-ipvs0';

/** The schedulers kube-proxy accepts for --ipvs-scheduler ("" means rr). */
export const SCHEDULERS: ReadonlySet<string> = new Set(['rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'dh', 'sh', 'sed', 'nq', 'mh']);

export interface RealServer {
  ip: string;
  port: number;
  weight: number;
}

export interface VirtualServer {
  protocol: Protocol;
  address: string;
  port: number;
  scheduler: string;
  /** ClientIP affinity timeout in seconds; 0 for none. */
  persistenceSeconds: number;
  /** "ip:port" ("[ip]:port" for IPv6) -> real server. */
  realServers: ReadonlyMap<string, RealServer>;
}

export interface IpSet {
  /** "hash:ip,port", "bitmap:port" ... */
  type: string;
  /** What follows the type on `create` ("family inet hashsize 1024 maxelem 65536", "range 0-65535"). */
  options: string;
  entries: ReadonlySet<string>;
}

export interface CompiledIpvs {
  family: Family;
  /** Addresses kube-ipvs0 holds. */
  addresses: ReadonlySet<string>;
  /** vsKey() -> virtual server. */
  virtualServers: ReadonlyMap<string, VirtualServer>;
  ipsets: ReadonlyMap<string, IpSet>;
  /** The iptables rules (mangle/filter/nat shared chains; no per-service chains in this mode). */
  iptables: CompiledRules;
}

export interface IpvsCompileOptions {
  scheduler: string;
  randomFully: boolean;
}

/** How ipvsadm names a virtual server: "-t 10.96.0.10:80" (tcp), "-u" (udp), "--sctp-service". */
export function vsKey(protocol: Protocol, address: string, port: number): string {
  const flag = protocol === 'TCP' ? '-t' : protocol === 'UDP' ? '-u' : '--sctp-service';
  return `${flag} ${hostPort(address, port)}`;
}

/**
 * ipset names: kube-proxy's, with "KUBE-6-" in place of "KUBE-" for the IPv6 sets, cut to the
 * 31 characters ipset allows (as kube-proxy cuts them).
 */
export function setName(base: string, family: Family): string {
  return family === 4 ? `KUBE-${base}` : `KUBE-6-${base}`.slice(0, 31);
}

const SET_TYPES: ReadonlyArray<[string, string]> = [
  ['CLUSTER-IP', 'hash:ip,port'],
  ['LOOP-BACK', 'hash:ip,port,ip'],
  ['EXTERNAL-IP', 'hash:ip,port'],
  ['EXTERNAL-IP-LOCAL', 'hash:ip,port'],
  ['LOAD-BALANCER', 'hash:ip,port'],
  ['LOAD-BALANCER-LOCAL', 'hash:ip,port'],
  ['LOAD-BALANCER-FW', 'hash:ip,port'],
  ['LOAD-BALANCER-SOURCE-IP', 'hash:ip,port,ip'],
  ['LOAD-BALANCER-SOURCE-CIDR', 'hash:ip,port,net'],
  ['NODE-PORT-TCP', 'bitmap:port'],
  ['NODE-PORT-LOCAL-TCP', 'bitmap:port'],
  ['NODE-PORT-UDP', 'bitmap:port'],
  ['NODE-PORT-LOCAL-UDP', 'bitmap:port'],
  ['NODE-PORT-SCTP-HASH', 'hash:ip,port'],
  ['NODE-PORT-LOCAL-SCTP-HASH', 'hash:ip,port'],
  ['HEALTH-CHECK-NODE-PORT', 'bitmap:port'],
  ['IPVS-IPS', 'hash:ip'],
];

/** The base names of every ipset this mode uses. */
export const SET_BASES: readonly string[] = SET_TYPES.map(([base]) => base);

function localMatchNot(fs: FamilyState): string[] | undefined {
  const d = fs.localDetector;
  if ((d.mode === 'ClusterCIDR' || d.mode === 'NodeCIDR') && d.cidrs.length > 0) return ['!', '-s', d.cidrs[0]!];
  if (d.mode === 'BridgeInterface' && d.interfaceName !== '') return ['!', '-i', d.interfaceName];
  if (d.mode === 'InterfaceNamePrefix' && d.interfaceName !== '') return ['!', '-i', `${d.interfaceName}+`];
  return undefined;
}

interface Builder {
  family: Family;
  scheduler: string;
  addresses: Set<string>;
  virtualServers: Map<string, VirtualServer>;
  sets: Map<string, Set<string>>;
}

function add(b: Builder, base: string, entry: string): void {
  const name = setName(base, b.family);
  let set = b.sets.get(name);
  if (set === undefined) b.sets.set(name, (set = new Set()));
  set.add(entry);
}

function realServers(endpoints: readonly EndpointState[]): Map<string, RealServer> {
  return new Map(endpoints.map((ep) => [hostPort(ep.ip, ep.port), { ip: ep.ip, port: ep.port, weight: 1 }]));
}

/**
 * The real servers of a frontend: the endpoints its decisions forward to. IPVS has one virtual
 * server for every source, so the forwarding decisions of a frontend name one set in this mode
 * (the plan's IPVS answers); a source whose decision is DROP (eTP Local without local endpoints,
 * traffic from elsewhere) is dropped by the kernel itself, as the reply bypasses this node.
 */
function realServerEndpoints(d: SourceDecisions): readonly EndpointState[] {
  for (const c of SOURCE_CLASSES) {
    const x = d[c];
    if (x.action === 'FORWARD') return x.endpoints;
  }
  return [];
}

function compileServicePort(b: Builder, plan: ServicePortPlan): void {
  const sp = plan.sp;
  const proto = sp.protocol.toLowerCase();
  const entry = (ip: string, port = sp.port): string => `${ip},${proto}:${port}`;
  const vs = (address: string, port: number, endpoints: readonly EndpointState[]): void => {
    b.virtualServers.set(vsKey(sp.protocol, address, port), { protocol: sp.protocol, address, port, scheduler: b.scheduler, persistenceSeconds: sp.affinityTimeoutSeconds, realServers: realServers(endpoints) });
    for (const ep of endpoints) if (ep.local) add(b, 'LOOP-BACK', `${ep.ip},${proto}:${ep.port},${ep.ip}`);
  };
  // External traffic that keeps its client address goes in the *-LOCAL sets, which the
  // masquerade rules skip.
  const local = !plan.masqueradesExternal;
  for (const f of plan.frontends) {
    // NodePorts are not served on loopback addresses (kube-proxy's IPVS mode skips them).
    if (f.kind === 'NodePort' && (f.address.startsWith('127.') || f.address === '::1')) continue;
    // Without real servers (iTP Local and none here, or no endpoints) IPVS answers ICMP port unreachable.
    vs(f.address, f.port, realServerEndpoints(f.bySource));
    if (f.kind === 'ClusterIP') {
      b.addresses.add(f.address);
      add(b, 'CLUSTER-IP', entry(f.address));
    } else if (f.kind === 'ExternalIP') {
      b.addresses.add(f.address);
      add(b, local ? 'EXTERNAL-IP-LOCAL' : 'EXTERNAL-IP', entry(f.address));
    } else if (f.kind === 'LoadBalancer') {
      b.addresses.add(f.address);
      add(b, 'LOAD-BALANCER', entry(f.address));
      if (local) add(b, 'LOAD-BALANCER-LOCAL', entry(f.address));
      if (f.sourceRanges.length > 0) {
        add(b, 'LOAD-BALANCER-FW', entry(f.address));
        for (const cidr of sp.loadBalancerSourceRanges) add(b, 'LOAD-BALANCER-SOURCE-CIDR', `${entry(f.address)},${cidr}`);
        if (sp.sourceRangesAllowLbIp) add(b, 'LOAD-BALANCER-SOURCE-IP', `${entry(f.address)},${f.address}`);
      }
    } else if (sp.protocol === 'SCTP') {
      add(b, local ? 'NODE-PORT-LOCAL-SCTP-HASH' : 'NODE-PORT-SCTP-HASH', entry(f.address, f.port));
    }
  }
  // TCP and UDP NodePorts match by port on every local address (even before the node's are known).
  if (plan.byKind.NodePort !== undefined && sp.protocol !== 'SCTP') {
    add(b, `NODE-PORT-${sp.protocol}`, String(sp.nodePort));
    if (local) add(b, `NODE-PORT-LOCAL-${sp.protocol}`, String(sp.nodePort));
  }
  if (sp.healthCheckNodePort !== 0) add(b, 'HEALTH-CHECK-NODE-PORT', String(sp.healthCheckNodePort));
}

function iptablesRules(state: DesiredState, fs: FamilyState | undefined, family: Family, randomFully: boolean): CompiledRules {
  const mark = masqueradeMark(state.config.masqueradeBit ?? 14);
  const MASQ_MARK = `${mark}/${mark}`;
  const s = (base: string): string => setName(base, family);
  const comment = (text: string): string[] => ['-m', 'comment', '--comment', `"${text}"`];
  const nat: Array<[string, string[]]> = [];
  const filter: Array<[string, string[]]> = [];
  const m = clusterIPMasquerade(fs, state.config);
  const masq = m === 'all' ? [] : m === 'not-local' && fs !== undefined ? localMatchNot(fs) : undefined;
  if (masq !== undefined) nat.push(['KUBE-SERVICES', [...comment('Kubernetes service cluster ip + port for masquerade purpose'), '-m', 'set', '--match-set', s('CLUSTER-IP'), 'dst,dst', ...masq, '-j', 'KUBE-MARK-MASQ']]);
  nat.push(
    ['KUBE-SERVICES', [...comment('Kubernetes service lb portal'), '-m', 'set', '--match-set', s('LOAD-BALANCER'), 'dst,dst', '-j', 'KUBE-LOAD-BALANCER']],
    ['KUBE-SERVICES', [...comment('Kubernetes service external ip + port for masquerade and filter purpose'), '-m', 'set', '--match-set', s('EXTERNAL-IP'), 'dst,dst', '-j', 'KUBE-MARK-MASQ']],
    ['KUBE-SERVICES', ['-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'KUBE-NODE-PORT']],
    // Accepted here so no later nat rule of someone else's interferes with IPVS.
    ['KUBE-SERVICES', ['-m', 'set', '--match-set', s('CLUSTER-IP'), 'dst,dst', '-j', 'ACCEPT']],
    ['KUBE-SERVICES', ['-m', 'set', '--match-set', s('LOAD-BALANCER'), 'dst,dst', '-j', 'ACCEPT']],
    ['KUBE-LOAD-BALANCER', [...comment('Kubernetes service load balancer ip + port with externalTrafficPolicy=local'), '-m', 'set', '--match-set', s('LOAD-BALANCER-LOCAL'), 'dst,dst', '-j', 'RETURN']],
    ['KUBE-LOAD-BALANCER', ['-j', 'KUBE-MARK-MASQ']],
  );
  for (const proto of ['TCP', 'UDP'] as const) {
    const p = proto.toLowerCase();
    nat.push(
      ['KUBE-NODE-PORT', ['-p', p, ...comment(`Kubernetes nodeport ${p} port with externalTrafficPolicy=local`), '-m', 'set', '--match-set', s(`NODE-PORT-LOCAL-${proto}`), 'dst', '-j', 'RETURN']],
      ['KUBE-NODE-PORT', ['-p', p, ...comment(`Kubernetes nodeport ${p} port for masquerade purpose`), '-m', 'set', '--match-set', s(`NODE-PORT-${proto}`), 'dst', '-j', 'KUBE-MARK-MASQ']],
    );
  }
  nat.push(
    ['KUBE-NODE-PORT', ['-p', 'sctp', ...comment('Kubernetes nodeport sctp port with externalTrafficPolicy=local'), '-m', 'set', '--match-set', s('NODE-PORT-LOCAL-SCTP-HASH'), 'dst,dst', '-j', 'RETURN']],
    ['KUBE-NODE-PORT', ['-p', 'sctp', ...comment('Kubernetes nodeport sctp port for masquerade purpose'), '-m', 'set', '--match-set', s('NODE-PORT-SCTP-HASH'), 'dst,dst', '-j', 'KUBE-MARK-MASQ']],
    ['KUBE-POSTROUTING', [...comment('Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose'), '-m', 'set', '--match-set', s('LOOP-BACK'), 'dst,dst,src', '-j', 'MASQUERADE']],
    ['KUBE-POSTROUTING', ['-m', 'mark', '!', '--mark', `${MASQ_MARK}`, '-j', 'RETURN']],
    ['KUBE-POSTROUTING', ['-j', 'MARK', '--xor-mark', mark]],
    ['KUBE-POSTROUTING', [...comment('kubernetes service traffic requiring SNAT'), '-j', 'MASQUERADE', ...(randomFully ? ['--random-fully'] : [])]],
    ['KUBE-MARK-MASQ', ['-j', 'MARK', '--or-mark', mark]],
  );
  filter.push(
    ['KUBE-FORWARD', ['-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP']],
    ['KUBE-FORWARD', [...comment('kubernetes forwarding rules'), '-m', 'mark', '--mark', MASQ_MARK, '-j', 'ACCEPT']],
    ['KUBE-FORWARD', [...comment('kubernetes forwarding conntrack rule'), '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT']],
    ['KUBE-NODE-PORT', [...comment('Kubernetes health check node port'), '-m', 'set', '--match-set', s('HEALTH-CHECK-NODE-PORT'), 'dst', '-j', 'ACCEPT']],
    ['KUBE-PROXY-FIREWALL', [...comment('Kubernetes service load balancer ip + port for load balancer with sourceRange'), '-m', 'set', '--match-set', s('LOAD-BALANCER-FW'), 'dst,dst', '-j', 'KUBE-SOURCE-RANGES-FIREWALL']],
    ['KUBE-SOURCE-RANGES-FIREWALL', ['-m', 'set', '--match-set', s('LOAD-BALANCER-SOURCE-CIDR'), 'dst,dst,src', '-j', 'RETURN']],
    ['KUBE-SOURCE-RANGES-FIREWALL', ['-m', 'set', '--match-set', s('LOAD-BALANCER-SOURCE-IP'), 'dst,dst,src', '-j', 'RETURN']],
    ['KUBE-SOURCE-RANGES-FIREWALL', ['-j', 'DROP']],
    // Service addresses answer only on their service ports: new connections to any other port
    // of an address on kube-ipvs0 are refused.
    ['KUBE-IPVS-FILTER', ['-m', 'set', '--match-set', s('LOAD-BALANCER'), 'dst,dst', '-j', 'RETURN']],
    ['KUBE-IPVS-FILTER', ['-m', 'set', '--match-set', s('CLUSTER-IP'), 'dst,dst', '-j', 'RETURN']],
    ['KUBE-IPVS-FILTER', ['-m', 'set', '--match-set', s('EXTERNAL-IP'), 'dst,dst', '-j', 'RETURN']],
    ['KUBE-IPVS-FILTER', ['-m', 'set', '--match-set', s('EXTERNAL-IP-LOCAL'), 'dst,dst', '-j', 'RETURN']],
    ['KUBE-IPVS-FILTER', ['-m', 'set', '--match-set', s('HEALTH-CHECK-NODE-PORT'), 'dst', '-j', 'RETURN']],
    ['KUBE-IPVS-FILTER', ['-m', 'conntrack', '--ctstate', 'NEW', '-m', 'set', '--match-set', s('IPVS-IPS'), 'dst', '-j', 'REJECT']],
  );
  const group = (entries: Array<[string, string[]]>, chains: string[]): Map<string, string[]> => {
    const m = new Map<string, string[]>(chains.map((c) => [c, []]));
    for (const [chain, args] of entries) m.get(chain)!.push(`-A ${chain} ${args.join(' ')}`);
    return m;
  };
  return {
    family,
    servicePorts: new Map(),
    shared: new Map([
      ['mangle', new Map([['KUBE-PROXY-CANARY', []]])],
      ['filter', group(filter, ['KUBE-FORWARD', 'KUBE-NODE-PORT', 'KUBE-PROXY-FIREWALL', 'KUBE-SOURCE-RANGES-FIREWALL', 'KUBE-IPVS-FILTER', 'KUBE-IPVS-OUT-FILTER', 'KUBE-PROXY-CANARY'])],
      ['nat', group(nat, ['KUBE-SERVICES', 'KUBE-POSTROUTING', 'KUBE-NODE-PORT', 'KUBE-LOAD-BALANCER', 'KUBE-MARK-MASQ', 'KUBE-PROXY-CANARY'])],
    ]),
  };
}

/** The jumps kube-proxy's IPVS mode keeps in the built-in chains. */
export const IPVS_JUMPS: ReadonlyArray<{ table: string; chain: string; args: string[] }> = [
  { table: 'nat', chain: 'OUTPUT', args: ['-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES'] },
  { table: 'nat', chain: 'PREROUTING', args: ['-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES'] },
  { table: 'nat', chain: 'POSTROUTING', args: ['-m', 'comment', '--comment', 'kubernetes postrouting rules', '-j', 'KUBE-POSTROUTING'] },
  { table: 'filter', chain: 'FORWARD', args: ['-m', 'comment', '--comment', 'kubernetes forwarding rules', '-j', 'KUBE-FORWARD'] },
  { table: 'filter', chain: 'INPUT', args: ['-m', 'comment', '--comment', 'kubernetes health check rules', '-j', 'KUBE-NODE-PORT'] },
  { table: 'filter', chain: 'INPUT', args: ['-m', 'comment', '--comment', 'kube-proxy firewall rules', '-j', 'KUBE-PROXY-FIREWALL'] },
  { table: 'filter', chain: 'FORWARD', args: ['-m', 'comment', '--comment', 'kube-proxy firewall rules', '-j', 'KUBE-PROXY-FIREWALL'] },
  { table: 'filter', chain: 'INPUT', args: ['-m', 'comment', '--comment', 'kubernetes ipvs access filter', '-j', 'KUBE-IPVS-FILTER'] },
  { table: 'filter', chain: 'OUTPUT', args: ['-m', 'comment', '--comment', 'kubernetes ipvs access filter', '-j', 'KUBE-IPVS-OUT-FILTER'] },
];

/** What one service port contributes: virtual servers, ipset entries, addresses on kube-ipvs0. */
export interface IpvsPort {
  virtualServers: ReadonlyMap<string, VirtualServer>;
  /** [set name, entry], in the order the sets list them. */
  entries: ReadonlyArray<readonly [string, string]>;
  addresses: readonly string[];
}

/** One service port's IPVS objects, translated from its plan. Pure. */
export function compileIpvsPort(plan: ServicePortPlan, family: Family, options: Pick<IpvsCompileOptions, 'scheduler'>): IpvsPort {
  const b: Builder = { family, scheduler: options.scheduler === '' ? 'rr' : options.scheduler, addresses: new Set(), virtualServers: new Map(), sets: new Map() };
  compileServicePort(b, plan);
  for (const ip of b.addresses) add(b, 'IPVS-IPS', ip);
  const entries: Array<[string, string]> = [];
  for (const [name, set] of b.sets) for (const e of set) entries.push([name, e]);
  return { virtualServers: b.virtualServers, entries, addresses: [...b.addresses] };
}

/** The family's ipsets (every one of them, empty or not), filled from the ports' entries. */
function ipsetsOf(family: Family, sets: ReadonlyMap<string, ReadonlySet<string>>): Map<string, IpSet> {
  const inet = family === 4 ? 'inet' : 'inet6';
  return new Map(SET_TYPES.map(([base, type]) => [setName(base, family), { type, options: type === 'bitmap:port' ? 'range 0-65535' : `family ${inet} hashsize 1024 maxelem 65536`, entries: sets.get(setName(base, family)) ?? new Set<string>() }]));
}

/** One family from its ports' objects (in the order given: sorted by key). */
export function assembleIpvs(state: DesiredState, family: Family, ports: Iterable<IpvsPort>, options: IpvsCompileOptions): CompiledIpvs {
  const fs = state.families.get(family);
  const addresses = new Set<string>();
  const virtualServers = new Map<string, VirtualServer>();
  const sets = new Map<string, Set<string>>(SET_TYPES.map(([base]) => [setName(base, family), new Set<string>()]));
  for (const p of ports) {
    for (const [k, vs] of p.virtualServers) virtualServers.set(k, vs);
    for (const [name, e] of p.entries) sets.get(name)!.add(e);
    for (const ip of p.addresses) addresses.add(ip);
  }
  return { family, addresses, virtualServers, ipsets: ipsetsOf(family, sets), iptables: iptablesRules(state, fs, family, options.randomFully) };
}

/** Compiles one IP family. */
export function compileIpvs(state: DesiredState, family: Family, options: IpvsCompileOptions): CompiledIpvs {
  const fs = state.families.get(family);
  const ports = fs === undefined ? [] : [...fs.servicePorts.values()].sort((a, c) => (a.key < c.key ? -1 : 1)).map((sp) => compileIpvsPort(planServicePort(sp, fs, state.config, 'ipvs'), family, options));
  return assembleIpvs(state, family, ports, options);
}
