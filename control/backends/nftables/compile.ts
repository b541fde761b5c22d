// The nftables compiler: desired state -> kube-proxy's nftables layout, one table "kube-proxy"
// per family. Service dispatch is by verdict maps (service-ips, service-nodeports) into
// per-service-port chains (service-/local-/external-/firewall-/endpoint-HASH8-ns/svc/proto/port);
// services without (local) endpoints are caught by no-endpoint-services / no-endpoint-nodeports
// in the filter hooks; LoadBalancerSourceRanges by firewall-ips before DNAT.
// Pure: the result is a set of named objects that render.ts turns into `nft -f -` transactions,
// whole or as the difference from what was applied before.
import { canonicalIp, familyOf, ipToBigInt, type Family } from '../../model/ip.ts';
import { chainUse, EXTERNAL_KINDS, isForward, planServicePort, unallocatedDropCIDRs, type Decision, type ServicePortPlan } from '../../model/plan.ts';
import type { DesiredState, EndpointState, FamilyState, ModelConfig } from '../../model/types.ts';
import { endpointObjects, servicePortObjects } from './names.ts';

export const TABLE = 'kube-proxy';
/** The masquerade mark (1 << nftables.masqueradeBit) as `nft list` prints it: bit 14, the default, is 0x00004000. */
export function masqueradeMark(bit: number): string {
  return `0x${((1 << bit) >>> 0).toString(16).padStart(8, '0')}`;
}

export const MASQ_MARK = masqueradeMark(14);

export interface NftSet {
  kind: 'set' | 'map';
  /** "ipv4_addr . inet_proto . inet_service : verdict" for a map. */
  type: string;
  flags: readonly string[];
  timeoutSeconds: number;
  comment: string;
  /** The kernel writes the elements (affinity sets): never flushed, never diffed. */
  dynamic: boolean;
}

export interface CompiledNft {
  family: Family;
  /** nft family keyword: "ip" or "ip6". */
  nftFamily: 'ip' | 'ip6';
  /** Base chains: name -> "type filter hook prerouting priority -110". */
  baseChains: ReadonlyMap<string, string>;
  /** Every chain (base chains too) -> its rules, in order. */
  chains: ReadonlyMap<string, readonly string[]>;
  sets: ReadonlyMap<string, NftSet>;
  /** set or map -> element key -> what follows the key (' comment "…" : goto …', or ''). */
  elements: ReadonlyMap<string, ReadonlyMap<string, string>>;
}

interface Builder {
  baseChains: Map<string, string>;
  chains: Map<string, string[]>;
  sets: Map<string, NftSet>;
  elements: Map<string, Map<string, string>>;
}

// kube-proxy's base chains (pkg/proxy/nftables, v1.33 and later): the firewall check must see
// the service address, so it runs before DNAT (dstnat - 10 = -110) in prerouting and output; the
// endpoint and cluster-IP checks run at filter priority (0), after DNAT in the output hook too,
// where what is still addressed to a ClusterIP was not translated: a port the service does not
// serve. Earlier layouts (filter-prerouting, filter-output-post-dnat at -90, the filter chains at
// -110) are replaced by a full sync: it deletes chains not wanted or declared otherwise.
const BASE_CHAINS: ReadonlyArray<[string, string]> = [
  ['filter-prerouting-pre-dnat', 'type filter hook prerouting priority -110'],
  ['filter-output-pre-dnat', 'type filter hook output priority -110'],
  ['filter-input', 'type filter hook input priority 0'],
  ['filter-forward', 'type filter hook forward priority 0'],
  ['filter-output', 'type filter hook output priority 0'],
  ['nat-prerouting', 'type nat hook prerouting priority -100'],
  ['nat-output', 'type nat hook output priority -100'],
  ['nat-postrouting', 'type nat hook postrouting priority 100'],
];

// [chain, from base chain, condition], in kube-proxy's order: reject is only valid in
// input/forward/output before 5.9, so the endpoints checks are not in prerouting.
const JUMPS: ReadonlyArray<[string, string, string]> = [
  ['nodeport-endpoints-check', 'filter-input', 'ct state new'],
  ['service-endpoints-check', 'filter-input', 'ct state new'],
  ['service-endpoints-check', 'filter-forward', 'ct state new'],
  ['service-endpoints-check', 'filter-output', 'ct state new'],
  ['firewall-check', 'filter-prerouting-pre-dnat', 'ct state new'],
  ['firewall-check', 'filter-output-pre-dnat', 'ct state new'],
  ['services', 'nat-output', ''],
  ['services', 'nat-prerouting', ''],
  ['masquerading', 'nat-postrouting', ''],
  ['cluster-ips-check', 'filter-forward', 'ct state new'],
  ['cluster-ips-check', 'filter-output', 'ct state new'],
];

function quote(text: string): string {
  return `"${text.replace(/["\\]/g, '')}"`;
}

function set(b: Builder, name: string, s: Partial<NftSet> & Pick<NftSet, 'kind' | 'type'>): void {
  b.sets.set(name, { flags: [], timeoutSeconds: 0, comment: '', dynamic: false, ...s });
  if (!s.dynamic) b.elements.set(name, new Map());
}

function element(b: Builder, setName: string, key: string, value = '', comment = ''): void {
  b.elements.get(setName)!.set(key, `${comment !== '' ? ` comment ${quote(comment)}` : ''}${value !== '' ? ` : ${value}` : ''}`);
}

function rule(b: Builder, chain: string, text: string): void {
  let rules = b.chains.get(chain);
  if (rules === undefined) b.chains.set(chain, (rules = []));
  rules.push(text);
}

/**
 * Addresses and CIDRs as an nft match operand, the way `nft list` prints them: host prefixes
 * dropped, canonical addresses, sorted, and one element without braces.
 */
export function nftAddressSet(cidrs: readonly string[]): string {
  const items = cidrs.map((c) => {
    const [addr, len] = c.split('/') as [string, string | undefined];
    const ip = canonicalIp(addr) ?? addr;
    const host = familyOf(ip) === 6 ? '128' : '32';
    return { ip, text: len === undefined || len === host ? ip : `${ip}/${len}` };
  });
  items.sort((a, b) => { const d = ipToBigInt(a.ip) - ipToBigInt(b.ip); return d < 0n ? -1 : d > 0n ? 1 : 0; });
  const texts = [...new Set(items.map((i) => i.text))];
  return texts.length === 1 ? texts[0]! : `{ ${texts.join(', ')} }`;
}

/** kube-proxy's local-traffic detector as nft matches: [is local, is not local], or undefined. */
function localMatches(fs: FamilyState, ipX: string): [string, string] | undefined {
  const d = fs.localDetector;
  if ((d.mode === 'ClusterCIDR' || d.mode === 'NodeCIDR') && d.cidrs.length > 0) {
    const cidrs = nftAddressSet(d.cidrs);
    return [`${ipX} saddr ${cidrs}`, `${ipX} saddr != ${cidrs}`];
  }
  if (d.mode === 'BridgeInterface' && d.interfaceName !== '') return [`iifname ${quote(d.interfaceName)}`, `iifname != ${quote(d.interfaceName)}`];
  if (d.mode === 'InterfaceNamePrefix' && d.interfaceName !== '') return [`iifname ${quote(`${d.interfaceName}*`)}`, `iifname != ${quote(`${d.interfaceName}*`)}`];
  return undefined;
}

function endpointAddress(ep: EndpointState, family: Family): string {
  return family === 4 ? `${ep.ip}:${ep.port}` : `[${ep.ip}]:${ep.port}`;
}

/** What the table's frame takes from the configuration beside the family's state. */
export interface FrameOptions {
  /** nftables.masqueradeBit (default 14). */
  masqueradeBit?: number;
  /** The CIDRs whose unallocated addresses are dropped (the plan's unallocatedDropCIDRs; the family's own are used). */
  serviceCIDRs?: readonly string[];
}

function setup(b: Builder, fs: FamilyState, family: Family, options: FrameOptions): void {
  const mark = masqueradeMark(options.masqueradeBit ?? 14);
  const ipX = family === 4 ? 'ip' : 'ip6';
  const addr = family === 4 ? 'ipv4_addr' : 'ipv6_addr';
  const noLocalhost = family === 4 ? 'ip daddr != 127.0.0.0/8' : 'ip6 daddr != ::1';
  for (const [name, decl] of BASE_CHAINS) {
    b.baseChains.set(name, decl);
    b.chains.set(name, []);
  }
  for (const name of ['services', 'service-endpoints-check', 'nodeport-endpoints-check', 'firewall-check', 'cluster-ips-check', 'masquerading', 'mark-for-masquerade', 'reject-chain']) b.chains.set(name, []);
  for (const [chain, from, condition] of JUMPS) rule(b, from, `${condition === '' ? '' : `${condition} `}jump ${chain}`);

  // Written as `nft list` prints them, so a full sync can tell an unchanged chain from its listing.
  rule(b, 'mark-for-masquerade', `meta mark set meta mark | ${mark}`);
  rule(b, 'masquerading', `meta mark & ${mark} == 0x00000000 return`);
  rule(b, 'masquerading', `meta mark set meta mark ^ ${mark}`);
  rule(b, 'masquerading', 'masquerade fully-random');

  set(b, 'cluster-ips', { kind: 'set', type: addr, comment: 'Active ClusterIPs' });
  rule(b, 'cluster-ips-check', `${ipX} daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"`);
  // What is still addressed into the service CIDRs here is a ClusterIP no Service holds.
  const serviceCIDRs = (options.serviceCIDRs ?? []).filter((c) => familyOf(c.split('/')[0]!) === family);
  if (serviceCIDRs.length > 0) rule(b, 'cluster-ips-check', `${ipX} daddr ${nftAddressSet(serviceCIDRs)} drop comment "Drop traffic to unallocated ClusterIPs"`);

  const nodePortsOn = fs.nodePortAddresses.all ? `fib daddr type local ${noLocalhost}` : `${ipX} daddr @nodeport-ips`;
  if (!fs.nodePortAddresses.all) {
    set(b, 'nodeport-ips', { kind: 'set', type: addr, comment: 'IPs that accept NodePort traffic' });
    // NodePorts are not served on loopback (there is no route_localnet in nftables mode).
    for (const ip of fs.nodePortAddresses.addresses) if (!(family === 4 ? ip.startsWith('127.') : ip === '::1')) element(b, 'nodeport-ips', ip);
  }

  set(b, 'no-endpoint-services', { kind: 'map', type: `${addr} . inet_proto . inet_service : verdict`, comment: 'vmap to drop or reject packets to services with no endpoints' });
  set(b, 'no-endpoint-nodeports', { kind: 'map', type: 'inet_proto . inet_service : verdict', comment: 'vmap to drop or reject packets to service nodeports with no endpoints' });
  rule(b, 'reject-chain', 'reject');
  rule(b, 'service-endpoints-check', `${ipX} daddr . meta l4proto . th dport vmap @no-endpoint-services`);
  rule(b, 'nodeport-endpoints-check', `${nodePortsOn} meta l4proto . th dport vmap @no-endpoint-nodeports`);

  set(b, 'firewall-ips', { kind: 'map', type: `${addr} . inet_proto . inet_service : verdict`, comment: 'destinations that are subject to LoadBalancerSourceRanges' });
  rule(b, 'firewall-check', `${ipX} daddr . meta l4proto . th dport vmap @firewall-ips`);

  set(b, 'service-ips', { kind: 'map', type: `${addr} . inet_proto . inet_service : verdict`, comment: 'ClusterIP, ExternalIP and LoadBalancer IP traffic' });
  set(b, 'service-nodeports', { kind: 'map', type: 'inet_proto . inet_service : verdict', comment: 'NodePort traffic' });
  rule(b, 'services', `${ipX} daddr . meta l4proto . th dport vmap @service-ips`);
  rule(b, 'services', `${nodePortsOn} meta l4proto . th dport vmap @service-nodeports`);
}

/** What one service port contributes to its family's table. */
export interface PortNft {
  /** Chains it owns, with their rules, in order. */
  chains: Map<string, string[]>;
  /** Sets it owns (ClientIP affinity). */
  sets: Map<string, NftSet>;
  /** Its elements in the shared sets and maps: [set, key, what follows the key]. */
  elements: Array<[string, string, string]>;
}

const sameForward = (a: Decision, b: Decision): boolean => isForward(a) && isForward(b) && a.policy === b.policy && a.masquerade === b.masquerade;

function elementText(value: string, comment: string): string {
  return `${comment !== '' ? ` comment ${quote(comment)}` : ''}${value !== '' ? ` : ${value}` : ''}`;
}

/**
 * One service port's chains, sets and map elements, translated from its plan
 * (control/model/plan.ts): the chain a frontend goes to, masquerading, drop or reject are the
 * plan's decisions; this only writes them in kube-proxy's layout. Pure.
 */
export function compileNftPort(plan: ServicePortPlan, fs: FamilyState): PortNft {
  const sp = plan.sp;
  const family = fs.family;
  const ipX = family === 4 ? 'ip' : 'ip6';
  const addr = family === 4 ? 'ipv4_addr' : 'ipv6_addr';
  const proto = sp.protocol.toLowerCase();
  const spn = sp.servicePortName;
  const names = servicePortObjects(sp.namespace, sp.name, sp.portName, sp.protocol);
  const epNames = (ep: EndpointState): { chain: string; affinitySet: string } => endpointObjects(sp.namespace, sp.name, sp.portName, sp.protocol, ep.ip, ep.port);
  const local = localMatches(fs, ipX);
  const out: PortNft = { chains: new Map(), sets: new Map(), elements: [] };
  const rule = (chain: string, text: string): void => {
    let rules = out.chains.get(chain);
    if (rules === undefined) out.chains.set(chain, (rules = []));
    rules.push(text);
  };
  const element = (set: string, key: string, value = '', comment = ''): void => void out.elements.push([set, key, elementText(value, comment)]);

  const clusterEndpoints = plan.use.cluster ? sp.clusterEndpoints : [];
  const localEndpoints = plan.use.local ? sp.localEndpoints : [];
  const chainExists = (policy: 'Cluster' | 'Local'): boolean => (policy === 'Local' ? localEndpoints : clusterEndpoints).length > 0;
  const chainOf = (d: Extract<Decision, { action: 'FORWARD' }>): string => (d.policy === 'Local' ? names.local : names.service);
  const verdict = (d: Decision): string => (d.action === 'REJECT' ? 'goto reject-chain' : 'drop');
  // The external kinds share one external chain (chainUse).
  const { internal, kinds, external, usesExternalChain, forwardsSomething, firewall: usesFirewall } = chainUse(plan);
  const key = (ip: string): string => `${ip} . ${proto} . ${sp.port}`;

  const toCluster = internal.other;
  element('cluster-ips', sp.clusterIP);
  if (isForward(toCluster)) element('service-ips', key(sp.clusterIP), `goto ${chainOf(toCluster)}`);
  else element('no-endpoint-services', key(sp.clusterIP), verdict(toCluster), spn);

  const unserved = (kind: (typeof EXTERNAL_KINDS)[number]): Decision | undefined => {
    const d = plan.byKind[kind]!.other;
    return isForward(d) ? undefined : d;
  };
  for (const ip of sp.externalIPs) {
    if (usesExternalChain) element('service-ips', key(ip), `goto ${names.external}`);
    const d = unserved('ExternalIP');
    if (d !== undefined) element('no-endpoint-services', key(ip), verdict(d), spn);
  }
  if (usesFirewall) rule(names.firewall, `${ipX} saddr != ${nftAddressSet(plan.lbSourceRanges)} drop`);
  for (const ip of sp.loadBalancerIPs) {
    if (usesExternalChain) element('service-ips', key(ip), `goto ${names.external}`);
    if (usesFirewall) element('firewall-ips', key(ip), `goto ${names.firewall}`, spn);
    const d = unserved('LoadBalancer');
    if (d !== undefined) element('no-endpoint-services', key(ip), verdict(d), spn);
  }
  if (sp.nodePort !== 0) {
    // NodePorts are not subject to loadBalancerSourceRanges (as in kube-proxy).
    if (usesExternalChain) element('service-nodeports', `${proto} . ${sp.nodePort}`, `goto ${names.external}`);
    const d = unserved('NodePort');
    if (d !== undefined) element('no-endpoint-nodeports', `${proto} . ${sp.nodePort}`, verdict(d), spn);
  }
  if (!forwardsSomething) return out;

  if (isForward(toCluster)) {
    const match = `${ipX} daddr ${sp.clusterIP} ${proto} dport ${sp.port}`;
    const pod = internal['local-pod'];
    if (isForward(pod) && pod.masquerade) rule(chainOf(toCluster), `${match} jump mark-for-masquerade`);
    // Off-cluster traffic to a ClusterIP (a static route to the service range) may leave the
    // node again, so it is masqueraded.
    else if (toCluster.masquerade && local !== undefined) rule(chainOf(toCluster), `${match} ${local[1]} jump mark-for-masquerade`);
  }
  if (usesExternalChain && external !== undefined) {
    const { other, node } = external;
    const pod = external['local-pod'];
    if (isForward(other) && other.masquerade) {
      rule(names.external, 'jump mark-for-masquerade');
    } else {
      // Pod traffic to an external destination behaves as if it went out to the LB and came
      // back; the node's own traffic has a local address as source, so it is masqueraded.
      if (isForward(pod) && !sameForward(pod, other) && local !== undefined && chainExists(pod.policy)) rule(names.external, `${local[0]} goto ${chainOf(pod)} comment "short-circuit pod traffic"`);
      if (isForward(node) && !sameForward(node, other)) {
        if (node.masquerade) rule(names.external, 'fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"');
        if (chainExists(node.policy)) rule(names.external, `fib saddr type local goto ${chainOf(node)} comment "short-circuit local traffic"`);
      }
    }
    if (isForward(other)) rule(names.external, `goto ${chainOf(other)}`);
  }

  const reachable = new Map<string, EndpointState>();
  for (const ep of [...clusterEndpoints, ...localEndpoints]) reachable.set(`${ep.ip}:${ep.port}`, ep);
  if (sp.affinityTimeoutSeconds > 0) {
    for (const ep of reachable.values()) out.sets.set(epNames(ep).affinitySet, { kind: 'set', type: addr, flags: ['dynamic', 'timeout'], timeoutSeconds: sp.affinityTimeoutSeconds, comment: '', dynamic: true });
  }
  // Endpoint selection as a cascade of numgen matches (1/(n-i) for the i-th of n, as iptables'
  // statistic rules), not a `numgen ... vmap { ... }`: every anonymous map is a set the kernel
  // names by scanning all the table's sets (quadratic: 10k services took 40 s to load), and
  // a named map per service is looked up by a linear scan too (6 s); rules cost neither.
  const select = (chain: string, eps: readonly EndpointState[]): void => {
    if (sp.affinityTimeoutSeconds > 0) for (const ep of eps) rule(chain, `${ipX} saddr @${epNames(ep).affinitySet} goto ${epNames(ep).chain}`);
    eps.forEach((ep, i) => rule(chain, i < eps.length - 1 ? `numgen random mod ${eps.length - i} 0 goto ${epNames(ep).chain}` : `goto ${epNames(ep).chain}`));
  };
  if (clusterEndpoints.length > 0) select(names.service, clusterEndpoints);
  if (localEndpoints.length > 0) select(names.local, localEndpoints);
  for (const ep of reachable.values()) {
    const { chain, affinitySet } = epNames(ep);
    // Hairpin: an endpoint reaching itself through the service is masqueraded.
    rule(chain, `${ipX} saddr ${ep.ip} jump mark-for-masquerade`);
    if (sp.affinityTimeoutSeconds > 0) rule(chain, `update @${affinitySet} { ${ipX} saddr }`);
    rule(chain, `meta l4proto ${proto} dnat to ${endpointAddress(ep, family)}`);
  }
  return out;
}

const emptyFamily = (family: Family): FamilyState => ({ family, servicePorts: new Map(), localDetector: { mode: 'None', cidrs: [], interfaceName: '' }, nodePortAddresses: { all: true, addresses: [] }, nodeIPs: [] });

/** The frame's settings from the model's configuration and the family's state. */
export function frameOptions(config: ModelConfig, fs: FamilyState | undefined): FrameOptions {
  return { masqueradeBit: config.masqueradeBit, serviceCIDRs: fs === undefined ? [] : unallocatedDropCIDRs(fs, 'nftables') };
}

/** The table's own objects (base chains, dispatch chains, shared sets and maps), without any service port. */
export function compileNftFrame(fs: FamilyState | undefined, family: Family, options: FrameOptions = {}): CompiledNft {
  const b: Builder = { baseChains: new Map(), chains: new Map(), sets: new Map(), elements: new Map() };
  setup(b, fs ?? emptyFamily(family), family, options);
  return { family, nftFamily: family === 4 ? 'ip' : 'ip6', ...b };
}

/** One family's table from its service ports' contributions (in the order given: sorted by key). */
export function assembleNft(fs: FamilyState | undefined, family: Family, ports: Iterable<PortNft>, options: FrameOptions = {}): CompiledNft {
  const frame = compileNftFrame(fs, family, options);
  const chains = frame.chains as Map<string, readonly string[]>;
  const sets = frame.sets as Map<string, NftSet>;
  const elements = frame.elements as Map<string, Map<string, string>>;
  for (const p of ports) {
    for (const [chain, rules] of p.chains) chains.set(chain, rules);
    for (const [name, s] of p.sets) sets.set(name, s);
    for (const [set, k, v] of p.elements) elements.get(set)!.set(k, v);
  }
  return frame;
}

/** Compiles one IP family's table. */
export function compileNftables(state: DesiredState, family: Family): CompiledNft {
  const fs = state.families.get(family);
  const ports = fs === undefined ? [] : [...fs.servicePorts.values()].sort((a, c) => (a.key < c.key ? -1 : 1)).map((sp) => compileNftPort(planServicePort(sp, fs, state.config, 'nftables'), fs));
  return assembleNft(fs, family, ports, frameOptions(state.config, fs));
}
