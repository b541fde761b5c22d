// The iptables compiler: desired state -> iptables-restore input in kube-proxy's layout and
// names (nat: KUBE-SERVICES, KUBE-SVC-*, KUBE-SVL-*, KUBE-EXT-*, KUBE-FW-*, KUBE-SEP-*,
// KUBE-NODEPORTS, KUBE-POSTROUTING, KUBE-MARK-MASQ; filter: KUBE-SERVICES, KUBE-EXTERNAL-SERVICES,
// KUBE-NODEPORTS, KUBE-FORWARD, KUBE-PROXY-FIREWALL; KUBE-PROXY-CANARY in mangle, nat, filter).
// Pure: the adapter (apply.ts) feeds the text to iptables-restore --noflush on stdin.
import type { Family } from '../../model/ip.ts';
import type { DesiredState, EndpointState, FamilyState, ServicePortState } from '../../model/types.ts';
import { endpointChain, externalChain, firewallChain, serviceChain, serviceLocalChain } from './names.ts';

export const MASQ_MARK = '0x4000/0x4000'; // bit 14, kube-proxy's --iptables-masquerade-bit default

/** The jumps kube-proxy keeps in the built-in chains (ensured one by one, not restored). */
export const JUMPS: ReadonlyArray<{ table: string; chain: string; args: string[] }> = [
  { table: 'filter', chain: 'INPUT', args: ['-m', 'conntrack', '--ctstate', 'NEW', '-m', 'comment', '--comment', 'kubernetes load balancer firewall', '-j', 'KUBE-PROXY-FIREWALL'] },
  { table: 'filter', chain: 'INPUT', args: ['-m', 'comment', '--comment', 'kubernetes health check service ports', '-j', 'KUBE-NODEPORTS'] },
  { table: 'filter', chain: 'INPUT', args: ['-m', 'conntrack', '--ctstate', 'NEW', '-m', 'comment', '--comment', 'kubernetes externally-visible service portals', '-j', 'KUBE-EXTERNAL-SERVICES'] },
  { table: 'filter', chain: 'FORWARD', args: ['-m', 'conntrack', '--ctstate', 'NEW', '-m', 'comment', '--comment', 'kubernetes load balancer firewall', '-j', 'KUBE-PROXY-FIREWALL'] },
  { table: 'filter', chain: 'FORWARD', args: ['-m', 'comment', '--comment', 'kubernetes forwarding rules', '-j', 'KUBE-FORWARD'] },
  { table: 'filter', chain: 'FORWARD', args: ['-m', 'conntrack', '--ctstate', 'NEW', '-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES'] },
  { table: 'filter', chain: 'FORWARD', args: ['-m', 'conntrack', '--ctstate', 'NEW', '-m', 'comment', '--comment', 'kubernetes externally-visible service portals', '-j', 'KUBE-EXTERNAL-SERVICES'] },
  { table: 'filter', chain: 'OUTPUT', args: ['-m', 'conntrack', '--ctstate', 'NEW', '-m', 'comment', '--comment', 'kubernetes load balancer firewall', '-j', 'KUBE-PROXY-FIREWALL'] },
  { table: 'filter', chain: 'OUTPUT', args: ['-m', 'conntrack', '--ctstate', 'NEW', '-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES'] },
  { table: 'nat', chain: 'PREROUTING', args: ['-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES'] },
  { table: 'nat', chain: 'OUTPUT', args: ['-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES'] },
  { table: 'nat', chain: 'POSTROUTING', args: ['-m', 'comment', '--comment', 'kubernetes postrouting rules', '-j', 'KUBE-POSTROUTING'] },
];

export interface CompileOptions {
  /** MASQUERADE --random-fully where the iptables binary supports it. */
  randomFully: boolean;
}

export interface CompiledRules {
  family: Family;
  /** Per service port, the chains it owns with their rules (for partial syncs). */
  servicePorts: Map<string, Map<string, string[]>>;
  /** Lines of the shared chains: table -> chain -> rules. */
  shared: Map<string, Map<string, string[]>>;
}

const SHARED_CHAINS: Record<string, string[]> = {
  nat: ['KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ', 'KUBE-PROXY-CANARY'],
  filter: ['KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-FORWARD', 'KUBE-NODEPORTS', 'KUBE-PROXY-FIREWALL', 'KUBE-PROXY-CANARY'],
  mangle: ['KUBE-PROXY-CANARY'],
};

function quote(comment: string): string {
  return /^[A-Za-z0-9_./:-]+$/.test(comment) ? comment : `"${comment.replace(/["\\]/g, '\\$&')}"`;
}

function hostCidr(ip: string, family: Family): string {
  return `${ip}/${family === 4 ? 32 : 128}`;
}

function endpointText(ep: EndpointState, family: Family): string {
  return family === 4 ? `${ep.ip}:${ep.port}` : `[${ep.ip}]:${ep.port}`;
}

/** kube-proxy prints statistic probabilities with 10 decimals: 1/(n-i) for the i-th of n. */
export function probability(n: number): string {
  return (1 / n).toFixed(10);
}

/**
 * kube-proxy's local-traffic detector as iptables matches: [is local, is not local], or
 * undefined when there is none. kube-proxy allows one CIDR per family.
 */
function localMatches(fs: FamilyState): [string[], string[]] | undefined {
  const d = fs.localDetector;
  if ((d.mode === 'ClusterCIDR' || d.mode === 'NodeCIDR') && d.cidrs.length > 0) return [['-s', d.cidrs[0]!], ['!', '-s', d.cidrs[0]!]];
  if (d.mode === 'BridgeInterface' && d.interfaceName !== '') return [['-i', d.interfaceName], ['!', '-i', d.interfaceName]];
  if (d.mode === 'InterfaceNamePrefix' && d.interfaceName !== '') return [['-i', `${d.interfaceName}+`], ['!', '-i', `${d.interfaceName}+`]];
  return undefined;
}

function proto(sp: ServicePortState): string[] {
  const p = sp.protocol.toLowerCase();
  return ['-m', p, '-p', p];
}

function line(chain: string, args: readonly string[]): string {
  return `-A ${chain} ${args.join(' ')}`;
}

function compileServicePort(sp: ServicePortState, fs: FamilyState, state: DesiredState, shared: CompiledRules['shared'], owned: Map<string, string[]>): void {
  const fam = fs.family;
  const spn = sp.servicePortName;
  const svc = serviceChain(spn, sp.protocol);
  const svl = serviceLocalChain(spn, sp.protocol);
  const ext = externalChain(spn, sp.protocol);
  const fw = firewallChain(spn, sp.protocol);
  const nat = (chain: string, args: readonly string[]): void => {
    if (SHARED_CHAINS.nat!.includes(chain)) shared.get('nat')!.get(chain)!.push(line(chain, args));
    else owned.get(chain)!.push(line(chain, args));
  };
  const filter = (chain: string, args: readonly string[]): void => void shared.get('filter')!.get(chain)!.push(line(chain, args));
  const comment = (text: string): string[] => ['-m', 'comment', '--comment', quote(text)];
  const dst = (ip: string, port: number): string[] => [...proto(sp), '-d', hostCidr(ip, fam), '--dport', String(port)];
  const usesCluster = !sp.internalPolicyLocal || sp.externallyAccessible;
  const usesLocal = sp.internalPolicyLocal || (sp.externallyAccessible && sp.externalPolicyLocal);
  const internalChain = sp.internalPolicyLocal ? svl : svc;
  const externalTarget = sp.externalPolicyLocal ? svl : svc;
  const hasEndpoints = sp.hasAnyEndpoints;
  const hasInternal = hasEndpoints && (!sp.internalPolicyLocal || sp.localEndpoints.length > 0);
  const hasExternal = hasEndpoints && (!sp.externalPolicyLocal || sp.localEndpoints.length > 0);
  // The EXT chain exists whenever there are endpoints: even without external ones, it carries the
  // short-circuit rules for pod and node traffic (kube-proxy's usesExternalTrafficChain).
  const usesExternalChain = hasEndpoints && sp.externallyAccessible;
  const lbWithRanges = sp.loadBalancerIPs.length > 0 && sp.loadBalancerSourceRanges.length > 0;

  // Chains this service port owns (declared even when empty, so stale rules in them go).
  const chains: string[] = [];
  if (hasEndpoints) {
    if (usesCluster && sp.clusterEndpoints.length > 0) chains.push(svc);
    if (usesLocal && sp.localEndpoints.length > 0) chains.push(svl);
    if (usesExternalChain) chains.push(ext);
    if (lbWithRanges) chains.push(fw);
    const eps = new Set([...(usesCluster ? sp.clusterEndpoints : []), ...(usesLocal ? sp.localEndpoints : [])]);
    for (const ep of eps) chains.push(endpointChain(spn, sp.protocol, endpointText(ep, fam)));
  }
  for (const c of chains) owned.set(c, []);

  // ClusterIP.
  if (hasInternal) {
    nat('KUBE-SERVICES', [...comment(`${spn} cluster IP`), ...dst(sp.clusterIP, sp.port), '-j', internalChain]);
  } else {
    filter('KUBE-SERVICES', [...comment(hasEndpoints ? `${spn} has no local endpoints` : `${spn} has no endpoints`), ...dst(sp.clusterIP, sp.port), '-j', hasEndpoints ? 'DROP' : 'REJECT']);
  }
  // External IPs, load-balancer IPs, NodePorts.
  const externalDestinations: Array<{ args: string[]; kind: string; chain: 'KUBE-SERVICES' | 'KUBE-NODEPORTS' }> = [
    ...sp.externalIPs.map((ip) => ({ args: dst(ip, sp.port), kind: 'external IP', chain: 'KUBE-SERVICES' as const })),
    ...sp.loadBalancerIPs.map((ip) => ({ args: dst(ip, sp.port), kind: 'loadbalancer IP', chain: 'KUBE-SERVICES' as const })),
    ...(sp.nodePort !== 0 ? [{ args: [...proto(sp), '--dport', String(sp.nodePort)], kind: '', chain: 'KUBE-NODEPORTS' as const }] : []),
  ];
  for (const d of externalDestinations) {
    const label = d.kind === '' ? spn : `${spn} ${d.kind}`;
    if (usesExternalChain) {
      const target = d.kind === 'loadbalancer IP' && lbWithRanges ? fw : ext;
      nat(d.chain, [...comment(label), ...d.args, '-j', target]);
    }
    if (!hasExternal) {
      // What the EXT chain did not translate (not a pod's or the node's own traffic) stops here.
      const why = hasEndpoints ? `${spn} has no local endpoints` : `${spn} has no endpoints`;
      const args = d.kind === '' ? ['-m', 'addrtype', '--dst-type', 'LOCAL', ...d.args] : d.args;
      filter('KUBE-EXTERNAL-SERVICES', [...comment(why), ...args, '-j', hasEndpoints ? 'DROP' : 'REJECT']);
    }
  }
  if (!hasEndpoints) return;

  // Masquerading for cluster-IP traffic from outside the pod network (or everything), in the
  // chain internal traffic goes to (KUBE-SVL under iTP Local).
  const local = localMatches(fs);
  if (hasInternal) {
    const masq = state.config.masqueradeAll ? [] : local?.[1];
    if (masq !== undefined) nat(internalChain, [...comment(`${spn} cluster IP`), ...dst(sp.clusterIP, sp.port), ...masq, '-j', 'KUBE-MARK-MASQ']);
  }
  // The external chain: masquerade (Cluster) or keep the client (Local, with the pod and node exceptions).
  if (usesExternalChain) {
    if (sp.externalPolicyLocal) {
      if (local !== undefined && owned.has(svc)) nat(ext, [...comment(`pod traffic for ${spn} external destinations`), ...local[0], '-j', svc]);
      nat(ext, [...comment(`masquerade LOCAL traffic for ${spn} external destinations`), '-m', 'addrtype', '--src-type', 'LOCAL', '-j', 'KUBE-MARK-MASQ']);
      if (owned.has(svc)) nat(ext, [...comment(`route LOCAL traffic for ${spn} external destinations`), '-m', 'addrtype', '--src-type', 'LOCAL', '-j', svc]);
    } else {
      nat(ext, [...comment(`masquerade traffic for ${spn} external destinations`), '-j', 'KUBE-MARK-MASQ']);
    }
    if (hasExternal) nat(ext, ['-j', externalTarget]);
  }
  // Source ranges: allowed sources continue to the external chain; the rest falls through and
  // KUBE-PROXY-FIREWALL drops it.
  if (lbWithRanges) {
    for (const r of sp.loadBalancerSourceRanges) nat(fw, [...comment(`${spn} loadbalancer IP`), '-s', r, '-j', ext]);
    if (sp.sourceRangesAllowLbIp) for (const ip of sp.loadBalancerIPs) nat(fw, [...comment(`${spn} loadbalancer IP`), '-s', hostCidr(ip, fam), '-j', ext]);
    nat(fw, [...comment(`other traffic to ${spn} will be dropped by KUBE-PROXY-FIREWALL`)]);
    for (const ip of sp.loadBalancerIPs) filter('KUBE-PROXY-FIREWALL', [...comment(`${spn} traffic not accepted by ${fw}`), ...dst(ip, sp.port), '-j', 'DROP']);
  }
  // Endpoint selection, with ClientIP affinity through the recent module.
  const select = (chain: string, eps: readonly EndpointState[]): void => {
    if (!owned.has(chain)) return;
    if (sp.affinityTimeoutSeconds > 0) {
      for (const ep of eps) {
        const sep = endpointChain(spn, sp.protocol, endpointText(ep, fam));
        nat(chain, [...comment(`${spn} -> ${endpointText(ep, fam)}`), '-m', 'recent', '--name', sep, '--rcheck', '--seconds', String(sp.affinityTimeoutSeconds), '--reap', '-j', sep]);
      }
    }
    eps.forEach((ep, i) => {
      const sep = endpointChain(spn, sp.protocol, endpointText(ep, fam));
      const stat = i < eps.length - 1 ? ['-m', 'statistic', '--mode', 'random', '--probability', probability(eps.length - i)] : [];
      nat(chain, [...comment(`${spn} -> ${endpointText(ep, fam)}`), ...stat, '-j', sep]);
    });
  };
  select(svc, sp.clusterEndpoints);
  select(svl, sp.localEndpoints);
  for (const ep of new Set([...(usesCluster ? sp.clusterEndpoints : []), ...(usesLocal ? sp.localEndpoints : [])])) {
    const sep = endpointChain(spn, sp.protocol, endpointText(ep, fam));
    nat(sep, [...comment(spn), '-s', hostCidr(ep.ip, fam), '-j', 'KUBE-MARK-MASQ']);
    const recent = sp.affinityTimeoutSeconds > 0 ? ['-m', 'recent', '--name', sep, '--set'] : [];
    nat(sep, [...comment(spn), ...recent, ...proto(sp), '-j', 'DNAT', '--to-destination', endpointText(ep, fam)]);
  }
}

/** Compiles one IP family's rules. */
export function compileIptables(state: DesiredState, family: Family, options: CompileOptions): CompiledRules {
  const fs = state.families.get(family);
  const shared: CompiledRules['shared'] = new Map(Object.entries(SHARED_CHAINS).map(([t, chains]) => [t, new Map(chains.map((c) => [c, [] as string[]]))]));
  const servicePorts: CompiledRules['servicePorts'] = new Map();
  const natShared = shared.get('nat')!;
  natShared.get('KUBE-POSTROUTING')!.push(
    line('KUBE-POSTROUTING', ['-m', 'mark', '!', '--mark', MASQ_MARK, '-j', 'RETURN']),
    line('KUBE-POSTROUTING', ['-j', 'MARK', '--xor-mark', '0x4000']),
    line('KUBE-POSTROUTING', ['-m', 'comment', '--comment', quote('kubernetes service traffic requiring SNAT'), '-j', 'MASQUERADE', ...(options.randomFully ? ['--random-fully'] : [])]),
  );
  natShared.get('KUBE-MARK-MASQ')!.push(line('KUBE-MARK-MASQ', ['-j', 'MARK', '--or-mark', '0x4000']));
  const filterShared = shared.get('filter')!;
  filterShared.get('KUBE-FORWARD')!.push(
    line('KUBE-FORWARD', ['-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP']),
    line('KUBE-FORWARD', ['-m', 'comment', '--comment', quote('kubernetes forwarding rules'), '-m', 'mark', '--mark', MASQ_MARK, '-j', 'ACCEPT']),
    line('KUBE-FORWARD', ['-m', 'comment', '--comment', quote('kubernetes forwarding conntrack rule'), '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT']),
  );
  if (fs !== undefined) {
    const ports = [...fs.servicePorts.values()].sort((a, b) => (a.key < b.key ? -1 : 1));
    for (const sp of ports) {
      const owned = new Map<string, string[]>();
      compileServicePort(sp, fs, state, shared, owned);
      servicePorts.set(sp.key, owned);
      if (sp.healthCheckNodePort !== 0) {
        filterShared.get('KUBE-NODEPORTS')!.push(line('KUBE-NODEPORTS', ['-m', 'comment', '--comment', quote(`${sp.servicePortName} health check node port`), '-m', 'tcp', '-p', 'tcp', '--dport', String(sp.healthCheckNodePort), '-j', 'ACCEPT']));
      }
    }
    // NodePorts: on every local address, or on the listed ones; this must be the last rule.
    const np = fs.nodePortAddresses;
    if (np.all) {
      natShared.get('KUBE-SERVICES')!.push(line('KUBE-SERVICES', ['-m', 'comment', '--comment', quote('kubernetes service nodeports; NOTE: this must be the last rule in this chain'), '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'KUBE-NODEPORTS']));
    } else {
      for (const ip of np.addresses) natShared.get('KUBE-SERVICES')!.push(line('KUBE-SERVICES', ['-m', 'comment', '--comment', quote('kubernetes service nodeports; NOTE: this must be the last rule in this chain'), '-d', hostCidr(ip, family), '-j', 'KUBE-NODEPORTS']));
    }
  }
  return { family, servicePorts, shared };
}

/**
 * iptables-restore input. `only`: the service ports whose chains to rewrite (a partial sync);
 * undefined: all of them. `stale`: chains to delete (gone service ports or endpoints).
 */
export function renderRestore(rules: CompiledRules, only?: ReadonlySet<string>, stale: readonly string[] = []): string {
  const out: string[] = [];
  for (const table of ['mangle', 'filter', 'nat']) {
    out.push(`*${table}`);
    const chains = rules.shared.get(table)!;
    const owned: Array<[string, string[]]> = [];
    if (table === 'nat') {
      for (const [key, m] of rules.servicePorts) if (only === undefined || only.has(key)) owned.push(...m);
    }
    for (const c of chains.keys()) out.push(`:${c} - [0:0]`);
    for (const [c] of owned) out.push(`:${c} - [0:0]`);
    if (table === 'nat') for (const c of stale) out.push(`:${c} - [0:0]`);
    for (const rulesOfChain of chains.values()) out.push(...rulesOfChain);
    for (const [, rulesOfChain] of owned) out.push(...rulesOfChain);
    if (table === 'nat') for (const c of stale) out.push(`-X ${c}`);
    out.push('COMMIT');
  }
  return `${out.join('\n')}\n`;
}
