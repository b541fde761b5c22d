// The nftables compiler: desired state -> kube-proxy's nftables layout, one table "kube-proxy"
// per family. Service dispatch is by verdict maps (service-ips, service-nodeports) into
// per-service-port chains (service-/local-/external-/firewall-/endpoint-HASH8-ns/svc/proto/port);
// services without (local) endpoints are caught by no-endpoint-services / no-endpoint-nodeports
// in the filter hooks; LoadBalancerSourceRanges by firewall-ips before DNAT.
// Pure: the result is a set of named objects that render.ts turns into `nft -f -` transactions,
// whole or as the difference from what was applied before.
import { canonicalIp, familyOf, ipToBigInt, type Family } from '../../model/ip.ts';
import type { DesiredState, EndpointState, FamilyState, ServicePortState } from '../../model/types.ts';
import { endpointObjects, servicePortObjects } from './names.ts';

export const TABLE = 'kube-proxy';
export const MASQ_MARK = '0x00004000'; // bit 14, as in iptables mode

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

// The filter chains run before DNAT (dstnat - 10) so they see the service address; one output
// chain runs after it (dstnat + 10) to catch what DNAT left at a ClusterIP.
const BASE_CHAINS: ReadonlyArray<[string, string]> = [
  ['filter-prerouting', 'type filter hook prerouting priority -110'],
  ['filter-input', 'type filter hook input priority -110'],
  ['filter-forward', 'type filter hook forward priority -110'],
  ['filter-output', 'type filter hook output priority -110'],
  ['filter-output-post-dnat', 'type filter hook output priority -90'],
  ['nat-prerouting', 'type nat hook prerouting priority -100'],
  ['nat-output', 'type nat hook output priority -100'],
  ['nat-postrouting', 'type nat hook postrouting priority 100'],
];

// [chain, from base chain, condition]: reject is only valid in input/forward/output before 5.9,
// so the endpoints checks are not in prerouting.
const JUMPS: ReadonlyArray<[string, string, string]> = [
  ['nodeport-endpoints-check', 'filter-input', 'ct state new'],
  ['service-endpoints-check', 'filter-input', 'ct state new'],
  ['service-endpoints-check', 'filter-forward', 'ct state new'],
  ['service-endpoints-check', 'filter-output', 'ct state new'],
  ['firewall-check', 'filter-prerouting', 'ct state new'],
  ['firewall-check', 'filter-output', 'ct state new'],
  ['services', 'nat-output', ''],
  ['services', 'nat-prerouting', ''],
  ['masquerading', 'nat-postrouting', ''],
  ['cluster-ips-check', 'filter-forward', 'ct state new'],
  ['cluster-ips-check', 'filter-output-post-dnat', 'ct state new'],
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

function setup(b: Builder, fs: FamilyState, family: Family): void {
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
  rule(b, 'mark-for-masquerade', `meta mark set meta mark | ${MASQ_MARK}`);
  rule(b, 'masquerading', `meta mark & ${MASQ_MARK} == 0x00000000 return`);
  rule(b, 'masquerading', `meta mark set meta mark ^ ${MASQ_MARK}`);
  rule(b, 'masquerading', 'masquerade fully-random');

  set(b, 'cluster-ips', { kind: 'set', type: addr, comment: 'Active ClusterIPs' });
  rule(b, 'cluster-ips-check', `${ipX} daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"`);

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

function compileServicePort(b: Builder, sp: ServicePortState, fs: FamilyState, state: DesiredState): void {
  const family = fs.family;
  const ipX = family === 4 ? 'ip' : 'ip6';
  const addr = family === 4 ? 'ipv4_addr' : 'ipv6_addr';
  const proto = sp.protocol.toLowerCase();
  const spn = sp.servicePortName;
  const names = servicePortObjects(sp.namespace, sp.name, sp.portName, sp.protocol);
  const epNames = (ep: EndpointState): { chain: string; affinitySet: string } => endpointObjects(sp.namespace, sp.name, sp.portName, sp.protocol, ep.ip, ep.port);
  const local = localMatches(fs, ipX);

  const usesCluster = !sp.internalPolicyLocal || sp.externallyAccessible;
  const usesLocal = sp.internalPolicyLocal || (sp.externallyAccessible && sp.externalPolicyLocal);
  const clusterEndpoints = usesCluster ? sp.clusterEndpoints : [];
  const localEndpoints = usesLocal ? sp.localEndpoints : [];
  const hasEndpoints = sp.hasAnyEndpoints;
  const usesClusterChain = clusterEndpoints.length > 0;
  const usesLocalChain = localEndpoints.length > 0;
  const internalChain = sp.internalPolicyLocal ? names.local : names.service;
  const hasInternal = hasEndpoints && (!sp.internalPolicyLocal || sp.localEndpoints.length > 0);
  const externalPolicyChain = sp.externalPolicyLocal ? names.local : names.service;
  const hasExternal = hasEndpoints && (!sp.externalPolicyLocal || sp.localEndpoints.length > 0);
  // Even without external endpoints the external chain carries the short-circuits for pod and
  // node traffic (kube-proxy's usesExternalTrafficChain).
  const usesExternalChain = hasEndpoints && sp.externallyAccessible;
  const usesFirewall = sp.loadBalancerIPs.length > 0 && sp.loadBalancerSourceRanges.length > 0;
  const internalVerdict = !hasEndpoints ? 'goto reject-chain' : 'drop';
  const externalVerdict = internalVerdict;
  const key = (ip: string): string => `${ip} . ${proto} . ${sp.port}`;

  element(b, 'cluster-ips', sp.clusterIP);
  if (hasInternal) element(b, 'service-ips', key(sp.clusterIP), `goto ${internalChain}`);
  else element(b, 'no-endpoint-services', key(sp.clusterIP), internalVerdict, spn);

  for (const ip of sp.externalIPs) {
    if (hasEndpoints) element(b, 'service-ips', key(ip), `goto ${names.external}`);
    if (!hasExternal) element(b, 'no-endpoint-services', key(ip), externalVerdict, spn);
  }
  if (usesFirewall) {
    const sources = [...sp.loadBalancerSourceRanges, ...(sp.sourceRangesAllowLbIp ? sp.loadBalancerIPs : [])];
    rule(b, names.firewall, `${ipX} saddr != ${nftAddressSet(sources)} drop`);
  }
  for (const ip of sp.loadBalancerIPs) {
    if (hasEndpoints) element(b, 'service-ips', key(ip), `goto ${names.external}`);
    if (usesFirewall) element(b, 'firewall-ips', key(ip), `goto ${names.firewall}`, spn);
    if (!hasExternal) element(b, 'no-endpoint-services', key(ip), externalVerdict, spn);
  }
  if (sp.nodePort !== 0) {
    // NodePorts are not subject to loadBalancerSourceRanges (as in kube-proxy).
    if (hasEndpoints) element(b, 'service-nodeports', `${proto} . ${sp.nodePort}`, `goto ${names.external}`);
    if (!hasExternal) element(b, 'no-endpoint-nodeports', `${proto} . ${sp.nodePort}`, externalVerdict, spn);
  }
  if (!hasEndpoints) return;

  if (hasInternal) {
    const match = `${ipX} daddr ${sp.clusterIP} ${proto} dport ${sp.port}`;
    if (state.config.masqueradeAll) rule(b, internalChain, `${match} jump mark-for-masquerade`);
    // Off-cluster traffic to a ClusterIP (a static route to the service range) may leave the
    // node again, so it is masqueraded.
    else if (local !== undefined) rule(b, internalChain, `${match} ${local[1]} jump mark-for-masquerade`);
  }
  if (usesExternalChain) {
    if (!sp.externalPolicyLocal) {
      rule(b, names.external, 'jump mark-for-masquerade');
    } else {
      // Pod traffic to an external destination behaves as if it went out to the LB and came
      // back: neither policy applies. The node's own traffic has a local address as source,
      // so it must be masqueraded.
      if (local !== undefined && usesClusterChain) rule(b, names.external, `${local[0]} goto ${names.service} comment "short-circuit pod traffic"`);
      rule(b, names.external, 'fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"');
      if (usesClusterChain) rule(b, names.external, `fib saddr type local goto ${names.service} comment "short-circuit local traffic"`);
    }
    if (hasExternal) rule(b, names.external, `goto ${externalPolicyChain}`);
  }

  const reachable = new Map<string, EndpointState>();
  for (const ep of [...clusterEndpoints, ...localEndpoints]) reachable.set(`${ep.ip}:${ep.port}`, ep);
  if (sp.affinityTimeoutSeconds > 0) {
    for (const ep of reachable.values()) set(b, epNames(ep).affinitySet, { kind: 'set', type: addr, flags: ['dynamic', 'timeout'], timeoutSeconds: sp.affinityTimeoutSeconds, dynamic: true });
  }
  const select = (chain: string, eps: readonly EndpointState[]): void => {
    if (sp.affinityTimeoutSeconds > 0) for (const ep of eps) rule(b, chain, `${ipX} saddr @${epNames(ep).affinitySet} goto ${epNames(ep).chain}`);
    const choices = eps.map((ep, i) => `${i} : goto ${epNames(ep).chain}`).join(', ');
    rule(b, chain, `numgen random mod ${eps.length} vmap { ${choices} }`);
  };
  if (usesClusterChain) select(names.service, clusterEndpoints);
  if (usesLocalChain) select(names.local, localEndpoints);
  for (const ep of reachable.values()) {
    const { chain, affinitySet } = epNames(ep);
    // Hairpin: an endpoint reaching itself through the service is masqueraded.
    rule(b, chain, `${ipX} saddr ${ep.ip} jump mark-for-masquerade`);
    if (sp.affinityTimeoutSeconds > 0) rule(b, chain, `update @${affinitySet} { ${ipX} saddr }`);
    rule(b, chain, `meta l4proto ${proto} dnat to ${endpointAddress(ep, family)}`);
  }
}

/** Compiles one IP family's table. */
export function compileNftables(state: DesiredState, family: Family): CompiledNft {
  const b: Builder = { baseChains: new Map(), chains: new Map(), sets: new Map(), elements: new Map() };
  const fs = state.families.get(family) ?? { family, servicePorts: new Map(), localDetector: { mode: 'None', cidrs: [], interfaceName: '' }, nodePortAddresses: { all: true, addresses: [] }, nodeIPs: [] };
  setup(b, fs, family);
  const ports = [...fs.servicePorts.values()].sort((a, c) => (a.key < c.key ? -1 : 1));
  for (const sp of ports) compileServicePort(b, sp, fs, state);
  return { family, nftFamily: family === 4 ? 'ip' : 'ip6', ...b };
}
