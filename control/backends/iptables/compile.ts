// The iptables compiler: desired state -> iptables-restore input in kube-proxy's layout and
// names (nat: KUBE-SERVICES, KUBE-SVC-*, KUBE-SVL-*, KUBE-EXT-*, KUBE-FW-*, KUBE-SEP-*,
// KUBE-NODEPORTS, KUBE-POSTROUTING, KUBE-MARK-MASQ; filter: KUBE-SERVICES, KUBE-EXTERNAL-SERVICES,
// KUBE-NODEPORTS, KUBE-FORWARD, KUBE-PROXY-FIREWALL; KUBE-PROXY-CANARY in mangle, nat, filter).
// Pure: the adapter (apply.ts) feeds the text to iptables-restore --noflush on stdin.
import type { Family } from '../../model/ip.ts';
import { chainUse, isForward, planServicePort, type Decision, type ServicePortPlan } from '../../model/plan.ts';
import type { DesiredState, EndpointState, FamilyState, ServicePortState } from '../../model/types.ts';
import { endpointChain, externalChain, firewallChain, serviceChain, serviceLocalChain } from './names.ts';

/** The fwmark of KUBE-MARK-MASQ (1 << masqueradeBit) as iptables-save prints it: bit 14, the default, is 0x4000. */
export function masqueradeMark(bit: number): string {
  return `0x${((1 << bit) >>> 0).toString(16)}`;
}

/** kube-proxy's mark/mask for the default bit (14). */
export const MASQ_MARK = `${masqueradeMark(14)}/${masqueradeMark(14)}`;

/** The jumps to KUBE-FIREWALL (kubelet's anti-martian chain) kube-proxy keeps when it serves localhost NodePorts. */
export const LOCALHOST_JUMPS: ReadonlyArray<{ table: string; chain: string; args: string[] }> = [
  { table: 'filter', chain: 'INPUT', args: ['-j', 'KUBE-FIREWALL'] },
  { table: 'filter', chain: 'OUTPUT', args: ['-j', 'KUBE-FIREWALL'] },
];

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
  /** iptables.masqueradeBit (default 14). */
  masqueradeBit?: number;
  /**
   * nf_conntrack_tcp_be_liberal is set on the node: as kube-proxy, no DROP of INVALID packets in
   * KUBE-FORWARD (with it, only out-of-window RSTs are INVALID).
   */
  conntrackTCPLiberal?: boolean;
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

/** What one service port contributes: the chains it owns, and its lines in the shared chains. */
export interface PortRules {
  /** chain -> rules (declared even when empty, so stale rules in them go). */
  owned: Map<string, string[]>;
  /** table -> shared chain -> this port's lines there. */
  shared: Map<string, Map<string, string[]>>;
}

const sameForward = (a: Decision, b: Decision): boolean => isForward(a) && isForward(b) && a.policy === b.policy && a.masquerade === b.masquerade;

/**
 * One service port's rules, translated from its plan (control/model/plan.ts): which chain a
 * frontend jumps to, masquerading, DROP or REJECT are the plan's decisions; this only writes
 * them in kube-proxy's layout. Pure.
 */
export function compileIptablesPort(plan: ServicePortPlan, fs: FamilyState): PortRules {
  const sp = plan.sp;
  const fam = fs.family;
  const spn = sp.servicePortName;
  const svc = serviceChain(spn, sp.protocol);
  const svl = serviceLocalChain(spn, sp.protocol);
  const ext = externalChain(spn, sp.protocol);
  const fw = firewallChain(spn, sp.protocol);
  const owned = new Map<string, string[]>();
  const shared = new Map<string, Map<string, string[]>>();
  const sharedLine = (table: string, chain: string, text: string): void => {
    let chains = shared.get(table);
    if (chains === undefined) shared.set(table, (chains = new Map()));
    let lines = chains.get(chain);
    if (lines === undefined) chains.set(chain, (lines = []));
    lines.push(text);
  };
  const nat = (chain: string, args: readonly string[]): void => {
    if (SHARED_CHAINS.nat!.includes(chain)) sharedLine('nat', chain, line(chain, args));
    else owned.get(chain)!.push(line(chain, args));
  };
  const filter = (chain: string, args: readonly string[]): void => sharedLine('filter', chain, line(chain, args));
  const comment = (text: string): string[] => ['-m', 'comment', '--comment', quote(text)];
  const dst = (ip: string, port: number): string[] => [...proto(sp), '-d', hostCidr(ip, fam), '--dport', String(port)];
  /** The chain holding the endpoint set a forwarding decision names. */
  const chainOf = (d: Extract<Decision, { action: 'FORWARD' }>): string => (d.policy === 'Local' ? svl : svc);
  const why = (d: Decision): string => (d.action === 'DROP' ? `${spn} has no local endpoints` : `${spn} has no endpoints`);

  // The external kinds share one EXT chain (chainUse).
  const { internal, kinds, external, usesExternalChain, forwardsSomething, firewall: lbWithRanges } = chainUse(plan);
  const endpoints = new Set([...(plan.use.cluster ? sp.clusterEndpoints : []), ...(plan.use.local ? sp.localEndpoints : [])]);

  if (forwardsSomething) {
    const chains: string[] = [];
    if (plan.use.cluster && sp.clusterEndpoints.length > 0) chains.push(svc);
    if (plan.use.local && sp.localEndpoints.length > 0) chains.push(svl);
    if (usesExternalChain) chains.push(ext);
    if (lbWithRanges) chains.push(fw);
    for (const ep of endpoints) chains.push(endpointChain(spn, sp.protocol, endpointText(ep, fam)));
    for (const c of chains) owned.set(c, []);
  }

  // ClusterIP: decisions differ by source only in masquerading.
  const toCluster = internal.other;
  if (isForward(toCluster)) nat('KUBE-SERVICES', [...comment(`${spn} cluster IP`), ...dst(sp.clusterIP, sp.port), '-j', chainOf(toCluster)]);
  else filter('KUBE-SERVICES', [...comment(why(toCluster)), ...dst(sp.clusterIP, sp.port), '-j', toCluster.action]);
  // External IPs, load-balancer IPs, NodePorts.
  for (const kind of kinds) {
    const d = plan.byKind[kind]!;
    const destinations: Array<{ args: string[]; label: string; chain: 'KUBE-SERVICES' | 'KUBE-NODEPORTS' }> =
      kind === 'ExternalIP' ? sp.externalIPs.map((ip) => ({ args: dst(ip, sp.port), label: `${spn} external IP`, chain: 'KUBE-SERVICES' as const }))
      : kind === 'LoadBalancer' ? sp.loadBalancerIPs.map((ip) => ({ args: dst(ip, sp.port), label: `${spn} loadbalancer IP`, chain: 'KUBE-SERVICES' as const }))
      : [{ args: [...proto(sp), '--dport', String(sp.nodePort)], label: spn, chain: 'KUBE-NODEPORTS' as const }];
    for (const dest of destinations) {
      if (usesExternalChain) nat(dest.chain, [...comment(dest.label), ...dest.args, '-j', kind === 'LoadBalancer' && lbWithRanges ? fw : ext]);
      if (!isForward(d.other)) {
        // What the EXT chain did not translate (not a pod's or the node's own traffic) stops here.
        const args = kind === 'NodePort' ? ['-m', 'addrtype', '--dst-type', 'LOCAL', ...dest.args] : dest.args;
        filter('KUBE-EXTERNAL-SERVICES', [...comment(why(d.other)), ...args, '-j', d.other.action]);
      }
    }
  }
  if (sp.healthCheckNodePort !== 0) filter('KUBE-NODEPORTS', [...comment(`${spn} health check node port`), '-m', 'tcp', '-p', 'tcp', '--dport', String(sp.healthCheckNodePort), '-j', 'ACCEPT']);
  if (!forwardsSomething) return { owned, shared };

  // Masquerading of cluster-IP traffic, in the chain internal traffic goes to: for every source
  // (--masquerade-all), or for what the local-traffic detector says is not a local pod.
  const local = localMatches(fs);
  if (isForward(toCluster)) {
    const pod = internal['local-pod'];
    const masq = isForward(pod) && pod.masquerade ? [] : toCluster.masquerade ? local?.[1] : undefined;
    if (masq !== undefined) nat(chainOf(toCluster), [...comment(`${spn} cluster IP`), ...dst(sp.clusterIP, sp.port), ...masq, '-j', 'KUBE-MARK-MASQ']);
  }
  // The external chain: masquerade everyone, or keep the client, with the sources whose
  // decision differs (pods, the node) sent their own way first.
  if (usesExternalChain && external !== undefined) {
    const { other, node } = external;
    const pod = external['local-pod'];
    if (isForward(other) && other.masquerade) {
      nat(ext, [...comment(`masquerade traffic for ${spn} external destinations`), '-j', 'KUBE-MARK-MASQ']);
    } else {
      if (isForward(pod) && !sameForward(pod, other) && local !== undefined && owned.has(chainOf(pod))) nat(ext, [...comment(`pod traffic for ${spn} external destinations`), ...local[0], '-j', chainOf(pod)]);
      if (isForward(node) && !sameForward(node, other)) {
        if (node.masquerade) nat(ext, [...comment(`masquerade LOCAL traffic for ${spn} external destinations`), '-m', 'addrtype', '--src-type', 'LOCAL', '-j', 'KUBE-MARK-MASQ']);
        if (owned.has(chainOf(node))) nat(ext, [...comment(`route LOCAL traffic for ${spn} external destinations`), '-m', 'addrtype', '--src-type', 'LOCAL', '-j', chainOf(node)]);
      }
    }
    if (isForward(other)) nat(ext, ['-j', chainOf(other)]);
  }
  // Source ranges: allowed sources continue to the external chain; the rest falls through and
  // KUBE-PROXY-FIREWALL drops it.
  if (lbWithRanges) {
    for (const r of plan.lbSourceRanges) nat(fw, [...comment(`${spn} loadbalancer IP`), '-s', r, '-j', ext]);
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
  for (const ep of endpoints) {
    const sep = endpointChain(spn, sp.protocol, endpointText(ep, fam));
    nat(sep, [...comment(spn), '-s', hostCidr(ep.ip, fam), '-j', 'KUBE-MARK-MASQ']);
    const recent = sp.affinityTimeoutSeconds > 0 ? ['-m', 'recent', '--name', sep, '--set'] : [];
    nat(sep, [...comment(spn), ...recent, ...proto(sp), '-j', 'DNAT', '--to-destination', endpointText(ep, fam)]);
  }
  return { owned, shared };
}

/** The shared chains' fixed lines before and after the service ports' own. */
function sharedFrame(fs: FamilyState | undefined, family: Family, options: CompileOptions): { head: CompiledRules['shared']; tail: Array<[string, string, string]> } {
  const head: CompiledRules['shared'] = new Map(Object.entries(SHARED_CHAINS).map(([t, chains]) => [t, new Map(chains.map((c) => [c, [] as string[]]))]));
  const natShared = head.get('nat')!;
  const mark = masqueradeMark(options.masqueradeBit ?? 14);
  natShared.get('KUBE-POSTROUTING')!.push(
    line('KUBE-POSTROUTING', ['-m', 'mark', '!', '--mark', `${mark}/${mark}`, '-j', 'RETURN']),
    line('KUBE-POSTROUTING', ['-j', 'MARK', '--xor-mark', mark]),
    line('KUBE-POSTROUTING', ['-m', 'comment', '--comment', quote('kubernetes service traffic requiring SNAT'), '-j', 'MASQUERADE', ...(options.randomFully ? ['--random-fully'] : [])]),
  );
  natShared.get('KUBE-MARK-MASQ')!.push(line('KUBE-MARK-MASQ', ['-j', 'MARK', '--or-mark', mark]));
  head.get('filter')!.get('KUBE-FORWARD')!.push(
    ...(options.conntrackTCPLiberal === true ? [] : [line('KUBE-FORWARD', ['-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP'])]),
    line('KUBE-FORWARD', ['-m', 'comment', '--comment', quote('kubernetes forwarding rules'), '-m', 'mark', '--mark', `${mark}/${mark}`, '-j', 'ACCEPT']),
    line('KUBE-FORWARD', ['-m', 'comment', '--comment', quote('kubernetes forwarding conntrack rule'), '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT']),
  );
  const tail: Array<[string, string, string]> = [];
  if (fs !== undefined) {
    const np = fs.nodePortAddresses;
    const localhost = family === 4 && np.localhost === true;
    if (localhost) {
      // kube-proxy's copy of kubelet's anti-martian rule: with route_localnet=1, packets from
      // elsewhere to 127.0.0.0/8 must not reach the host's loopback services.
      head.get('filter')!.set('KUBE-FIREWALL', [
        line('KUBE-FIREWALL', ['-m', 'comment', '--comment', quote('block incoming localnet connections'), '-d', '127.0.0.0/8', '!', '-s', '127.0.0.0/8', '-m', 'conntrack', '!', '--ctstate', 'RELATED,ESTABLISHED,DNAT', '-j', 'DROP']),
      ]);
    }
    // NodePorts: on every local address, or on the listed ones; this must be the last rule.
    // Loopback: served only with localhostNodePorts (IPv4), never on IPv6's ::1.
    const last = quote('kubernetes service nodeports; NOTE: this must be the last rule in this chain');
    const isLoopback = (ip: string): boolean => (family === 4 ? ip.startsWith('127.') : ip === '::1');
    if (np.all) {
      const notLoopback = family === 6 ? ['!', '-d', '::1/128'] : localhost ? [] : ['!', '-d', '127.0.0.0/8'];
      tail.push(['nat', 'KUBE-SERVICES', line('KUBE-SERVICES', ['-m', 'comment', '--comment', last, '-m', 'addrtype', '--dst-type', 'LOCAL', ...notLoopback, '-j', 'KUBE-NODEPORTS'])]);
    } else {
      const ips = np.addresses.filter((ip) => !isLoopback(ip));
      if (localhost) ips.push('127.0.0.1');
      for (const ip of ips) tail.push(['nat', 'KUBE-SERVICES', line('KUBE-SERVICES', ['-m', 'comment', '--comment', last, '-d', hostCidr(ip, family), '-j', 'KUBE-NODEPORTS'])]);
    }
  }
  return { head, tail };
}

/** One family's rules from its service ports' (in the order given: sorted by key). */
export function assembleIptables(fs: FamilyState | undefined, family: Family, ports: Iterable<[string, PortRules]>, options: CompileOptions): CompiledRules {
  const { head: shared, tail } = sharedFrame(fs, family, options);
  const servicePorts: CompiledRules['servicePorts'] = new Map();
  for (const [key, rules] of ports) {
    servicePorts.set(key, rules.owned);
    for (const [table, chains] of rules.shared) for (const [chain, lines] of chains) shared.get(table)!.get(chain)!.push(...lines);
  }
  for (const [table, chain, text] of tail) shared.get(table)!.get(chain)!.push(text);
  return { family, servicePorts, shared };
}

/** Service ports of a family in key order (the order every full output lists them in). */
export function sortedPorts(fs: FamilyState): ServicePortState[] {
  return [...fs.servicePorts.values()].sort((a, b) => (a.key < b.key ? -1 : 1));
}

/** Compiles one IP family's rules. */
export function compileIptables(state: DesiredState, family: Family, options: CompileOptions): CompiledRules {
  const fs = state.families.get(family);
  const ports = fs === undefined ? [] : sortedPorts(fs).map((sp): [string, PortRules] => [sp.key, compileIptablesPort(planServicePort(sp, fs, state.config, 'iptables'), fs)]);
  return assembleIptables(fs, family, ports, { masqueradeBit: state.config.masqueradeBit, ...options });
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

/** iptables-restore input inserting `jumps` (-I, each at the top, in the given order), table by table. */
export function renderJumpInserts(jumps: ReadonlyArray<{ table: string; chain: string; args: readonly string[] }>): string {
  const out: string[] = [];
  for (const table of [...new Set(jumps.map((j) => j.table))]) {
    out.push(`*${table}`);
    for (const j of jumps) if (j.table === table) out.push(`-I ${j.chain} ${j.args.map(quote).join(' ')}`);
    out.push('COMMIT');
  }
  return `${out.join('\n')}\n`;
}
