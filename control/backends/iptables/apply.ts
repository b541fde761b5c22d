// The iptables adapter: feeds compiled rules to iptables-restore --noflush on stdin. A partial
// sync compiles and sends only the service ports that changed: their own chains flushed and
// refilled, their lines in the shared chains deleted and inserted one by one (-D / -I), so a
// one-endpoint change at 10k services is a few lines, not the 10k-line KUBE-SERVICES. A full sync
// (at start, every syncPeriod, after a failure, or when the canary chain vanished because someone
// flushed the tables) rewrites every chain and ensures kube-proxy's jumps in the built-in chains.
// Compiled rules are kept per service port and reused while the port's state object is the same
// (the tracker replaces it on every change): its identity is the port's version.
import type { Family } from '../../model/ip.ts';
import { planServicePort } from '../../model/plan.ts';
import type { ChangeSet, DesiredState, FamilyState, ModelConfig, ServicePortState } from '../../model/types.ts';
import { RecentLog, toolRunner, type StoppableToolRunner, type ToolRunner } from '../tool-runner.ts';
import { assembleIptables, compileIptablesPort, JUMPS, LOCALHOST_JUMPS, renderJumpInserts, renderRestore, type PortRules } from './compile.ts';

/** What localhost NodePorts need (kube-proxy sets it at start): the kernel routes packets rerouted to 127.0.0.0/8 off the loopback. */
export const ROUTE_LOCALNET = 'net.ipv4.conf.all.route_localnet';

/** kube-proxy's wait for the xtables lock: -w 5 (seconds). */
export const XTABLES_WAIT = ['-w', '5'];

export interface IptablesOptions {
  families: readonly Family[];
  /** Prepended to every command (the lab runs them inside a node's netns); empty in production. */
  commandPrefix?: readonly string[];
  randomFully?: boolean;
  /** Runs the tools (default: toolRunner(commandPrefix), with timeouts); tests inject hung ones. */
  run?: ToolRunner;
}

export interface IptablesSyncReport {
  full: boolean;
  variant: IptablesVariant;
  /** kubeproxy_sync_proxy_rules_iptables_total: rules per table, summed over families. */
  rulesPerTable: Record<string, number>;
  /** Per family: service ports whose chains were rewritten, and bytes sent to iptables-restore. */
  families: Array<{ family: Family; full: boolean; rewritten: number; bytes: number; staleChains: number }>;
}

export type IptablesVariant = 'nft' | 'legacy';

/** The tools of one family and variant: iptables-nft-restore, ip6tables-legacy, ... */
export function iptablesTools(family: Family, variant: IptablesVariant): { restore: string; iptables: string; save: string } {
  const base = family === 4 ? 'iptables' : 'ip6tables';
  return { restore: `${base}-${variant}-restore`, iptables: `${base}-${variant}`, save: `${base}-${variant}-save` };
}

/**
 * Which iptables the system uses, as kube-proxy's iptables wrapper decides: the variant that
 * already holds more rules wins (the kubelet and the CNI wrote them), nft when neither has any.
 */
export async function detectVariant(run: (file: string, args: string[]) => Promise<{ ok: boolean; out: string }>): Promise<IptablesVariant> {
  const count = async (v: IptablesVariant): Promise<number> => {
    let n = 0;
    for (const family of [4, 6] as const) {
      const r = await run(iptablesTools(family, v).save, []);
      if (r.ok) n += r.out.split('\n').filter((l) => l.startsWith('-')).length;
    }
    return n;
  };
  const [legacy, nft] = [await count('legacy'), await count('nft')];
  return legacy > nft ? 'legacy' : 'nft';
}

interface CachedPort {
  sp: ServicePortState;
  rules: PortRules;
}

/** What a family's compiled rules were made from, beside the ports: when it changes, every port is recompiled. */
function familyKey(fs: FamilyState | undefined, config: ModelConfig): string {
  if (fs === undefined) return '';
  const d = fs.localDetector;
  const np = fs.nodePortAddresses;
  return [d.mode, d.interfaceName, ...d.cidrs, '|', np.all, np.localhost === true, ...np.addresses, '|', config.masqueradeAll, config.masqueradeBit].join(' ');
}

class FamilyRules {
  ports = new Map<string, CachedPort>();
  key = '';
  config: ModelConfig | undefined;
  /** Chains the kernel may hold from us: what was applied, plus what a failed attempt declared. */
  chains = new Set<string>();
  /** Rules per table, kept as ports change (kubeproxy_sync_proxy_rules_iptables_total). */
  lines = new Map<string, number>();
  valid = false;
}

function countLines(rules: PortRules, sign: 1 | -1, into: Map<string, number>): void {
  for (const lines of rules.owned.values()) into.set('nat', (into.get('nat') ?? 0) + sign * lines.length);
  for (const [table, chains] of rules.shared) for (const lines of chains.values()) into.set(table, (into.get(table) ?? 0) + sign * lines.length);
}

/**
 * iptables-restore input for a partial sync: the changed ports' chains declared (flushed) and
 * refilled, their shared-chain lines deleted or inserted, chains nothing owns any more deleted.
 * Ports contribute to shared chains that have no fixed rules of their own but for the NodePort
 * catch-all at the end of nat KUBE-SERVICES, so new lines go to the top (-I 1), kept in order.
 */
export function renderPartial(before: ReadonlyMap<string, PortRules | undefined>, after: ReadonlyMap<string, PortRules | undefined>): { text: string; stale: string[] } {
  const owned = new Map<string, string[]>();
  const oldChains = new Set<string>();
  const del = new Map<string, string[]>(); // "table chain" -> lines
  const ins = new Map<string, string[]>();
  const push = (m: Map<string, string[]>, k: string, v: string): void => {
    let a = m.get(k);
    if (a === undefined) m.set(k, (a = []));
    a.push(v);
  };
  for (const [key, next] of after) {
    const prev = before.get(key);
    for (const c of prev?.owned.keys() ?? []) oldChains.add(c);
    for (const [c, lines] of next?.owned ?? []) owned.set(c, lines);
    for (const table of new Set([...(prev?.shared.keys() ?? []), ...(next?.shared.keys() ?? [])])) {
      const chains = new Set([...(prev?.shared.get(table)?.keys() ?? []), ...(next?.shared.get(table)?.keys() ?? [])]);
      for (const chain of chains) {
        const a = prev?.shared.get(table)?.get(chain) ?? [];
        const b = next?.shared.get(table)?.get(chain) ?? [];
        const keep = new Set(a.filter((l) => b.includes(l)));
        for (const l of a) if (!keep.has(l)) push(del, `${table} ${chain}`, l);
        for (const l of b) if (!keep.has(l)) push(ins, `${table} ${chain}`, l);
      }
    }
  }
  const stale = [...oldChains].filter((c) => !owned.has(c));
  const out: string[] = [];
  for (const table of ['filter', 'nat']) {
    const body: string[] = [];
    if (table === 'nat') {
      for (const c of [...owned.keys(), ...stale]) body.push(`:${c} - [0:0]`);
      for (const lines of owned.values()) body.push(...lines);
    }
    for (const [k, lines] of del) if (k.startsWith(`${table} `)) for (const l of lines) body.push(`-D${l.slice(2)}`);
    for (const [k, lines] of ins) {
      if (!k.startsWith(`${table} `)) continue;
      const chain = k.slice(table.length + 1);
      for (const l of [...lines].reverse()) body.push(`-I ${chain} 1${l.slice(3 + chain.length)}`);
    }
    if (table === 'nat') for (const c of stale) body.push(`-X ${c}`);
    if (body.length > 0) out.push(`*${table}`, ...body, 'COMMIT');
  }
  return { text: out.length === 0 ? '' : `${out.join('\n')}\n`, stale };
}

export class IptablesBackend {
  private readonly o: IptablesOptions;
  private readonly run: ToolRunner;
  private readonly families = new Map<Family, FamilyRules>();
  private variant: IptablesVariant | undefined;
  /** route_localnet was set (once, as kube-proxy does at start). */
  private routeLocalnet = false;
  /** nf_conntrack_tcp_be_liberal as read at the first full sync (kube-proxy reads it at start). */
  private tcpLiberal: boolean | undefined;
  /** kubeproxy_sync_proxy_rules_iptables_restore_failures_total / _partial_restore_failures_total */
  restoreFailures = 0;
  partialRestoreFailures = 0;
  /** Why the last partial restore failed (a full one followed). */
  partialFailure: string | undefined;
  /** The last transactions sent to the restore tool (bounded), for tests that count what a change rewrote. */
  readonly sent = new RecentLog<{ family: Family; full: boolean; text: string }>();

  constructor(o: IptablesOptions) {
    this.o = o;
    this.run = o.run ?? toolRunner(o.commandPrefix);
    for (const f of o.families) this.families.set(f, new FamilyRules());
  }

  /** Kills a running tool (SIGTERM of the agent); the backend runs nothing after. */
  stop(): void {
    (this.run as Partial<StoppableToolRunner>).stop?.();
  }

  /** True when our canary chain is gone (the tables were flushed): only a full sync repairs that. */
  async canaryMissing(): Promise<boolean> {
    const variant = await this.detected();
    for (const family of this.o.families) {
      const r = await this.run(iptablesTools(family, variant).iptables, [...XTABLES_WAIT, '-t', 'mangle', '-S', 'KUBE-PROXY-CANARY']);
      if (!r.ok) return true;
    }
    return false;
  }

  private async detected(): Promise<IptablesVariant> {
    this.variant ??= await detectVariant((f, a) => this.run(f, a));
    return this.variant;
  }

  /**
   * `changes` (the tracker's change set since the last sync) limits the work of a partial sync
   * to the ports it names; without it the ports are compared by identity (O(ports), no compile).
   */
  async sync(state: DesiredState, full: boolean, changes?: ChangeSet): Promise<IptablesSyncReport> {
    const variant = await this.detected();
    if (full || [...this.families.values()].some((f) => !f.valid)) return this.syncFamilies(state, variant, true, changes);
    // The canary is checked beside the partial restores, not before them (it is an iptables
    // process of its own): a flush by someone else is rare, and then a full sync follows at once.
    const canaryMissing = this.canaryMissing();
    let report: IptablesSyncReport | undefined;
    let failure: unknown;
    try {
      report = await this.syncFamilies(state, variant, false, changes);
    } catch (e) {
      failure = e;
    }
    if (await canaryMissing) return this.syncFamilies(state, variant, true, changes);
    if (report === undefined) throw failure;
    return report;
  }

  private async syncFamilies(state: DesiredState, variant: IptablesVariant, forceFull: boolean, changes: ChangeSet | undefined): Promise<IptablesSyncReport> {
    const report: IptablesSyncReport = { full: forceFull, variant, rulesPerTable: { filter: 0, nat: 0 }, families: [] };
    for (const family of this.o.families) {
      const fr = this.families.get(family)!;
      const fs = state.families.get(family);
      const key = familyKey(fs, state.config);
      let whole = forceFull || key !== fr.key || fr.config !== state.config;
      let line: IptablesSyncReport['families'][number] | undefined;
      if (!whole) {
        try {
          line = await this.partial(family, fr, fs, state.config, variant, changes);
        } catch (e) {
          this.partialRestoreFailures++;
          this.partialFailure = (e as Error).message;
          whole = true; // at once, not at the next sync: the kernel may hold anything now
        }
      }
      if (whole) {
        try {
          line = await this.whole(family, fr, fs, state.config, key, variant);
        } catch (e) {
          this.restoreFailures++;
          throw e;
        }
        report.full = true;
      }
      report.families.push(line!);
      for (const [table, n] of fr.lines) report.rulesPerTable[table] = (report.rulesPerTable[table] ?? 0) + n;
    }
    return report;
  }

  private compile(fs: FamilyState, config: ModelConfig, sp: ServicePortState): PortRules {
    return compileIptablesPort(planServicePort(sp, fs, config, 'iptables'), fs);
  }

  private async restore(family: Family, variant: IptablesVariant, text: string, full: boolean): Promise<void> {
    const t = iptablesTools(family, variant);
    const r = await this.run(t.restore, [...XTABLES_WAIT, '--noflush'], text);
    if (!r.ok) throw new Error(`${t.restore} failed: ${r.out.trim()}`);
    this.sent.push({ family, full, text });
  }

  /** Every chain rewritten; ports whose state object is unchanged keep their compiled rules. */
  private async whole(family: Family, fr: FamilyRules, fs: FamilyState | undefined, config: ModelConfig, key: string, variant: IptablesVariant): Promise<IptablesSyncReport['families'][number]> {
    const reuse = fr.valid && key === fr.key && fr.config === config;
    const ports = new Map<string, CachedPort>();
    const lines = new Map<string, number>();
    for (const sp of fs === undefined ? [] : [...fs.servicePorts.values()].sort((a, b) => (a.key < b.key ? -1 : 1))) {
      const cached = fr.ports.get(sp.key);
      const rules = reuse && cached?.sp === sp ? cached.rules : this.compile(fs!, config, sp);
      ports.set(sp.key, { sp, rules });
      countLines(rules, 1, lines);
    }
    this.tcpLiberal ??= await this.readTcpLiberal();
    const options = { randomFully: this.o.randomFully ?? true, masqueradeBit: config.masqueradeBit, conntrackTCPLiberal: this.tcpLiberal };
    const localhost = family === 4 && fs?.nodePortAddresses.localhost === true;
    if (localhost) await this.ensureRouteLocalnet();
    const rules = assembleIptables(fs, family, [...ports].map(([k, p]): [string, PortRules] => [k, p.rules]), options);
    const live = new Set<string>();
    for (const p of ports.values()) for (const c of p.rules.owned.keys()) live.add(c);
    const stale = [...fr.chains].filter((c) => !live.has(c));
    const text = renderRestore(rules, undefined, stale);
    fr.valid = false;
    for (const c of live) fr.chains.add(c);
    await this.restore(family, variant, text, true);
    await this.ensureJumps(family, variant, localhost);
    // The fixed lines of the shared chains, beside the ports' own.
    const frame = assembleIptables(fs, family, [], options);
    for (const [table, chains] of frame.shared) for (const l of chains.values()) lines.set(table, (lines.get(table) ?? 0) + l.length);
    Object.assign(fr, { ports, key, config, chains: live, lines, valid: true });
    return { family, full: true, rewritten: ports.size, bytes: text.length, staleChains: stale.length };
  }

  /** Only the ports named by `changes` (or, without it, whose state object changed). */
  private async partial(family: Family, fr: FamilyRules, fs: FamilyState | undefined, config: ModelConfig, variant: IptablesVariant, changes: ChangeSet | undefined): Promise<IptablesSyncReport['families'][number]> {
    const candidates = new Set<string>();
    if (changes !== undefined) {
      for (const sp of changes.upserted) if (sp.family === family) candidates.add(sp.key);
      for (const sp of changes.removed) if (sp.family === family) candidates.add(sp.key);
    } else {
      for (const [k, sp] of fs?.servicePorts ?? []) if (fr.ports.get(k)?.sp !== sp) candidates.add(k);
      for (const k of fr.ports.keys()) if (!fs?.servicePorts.has(k)) candidates.add(k);
    }
    const before = new Map<string, PortRules | undefined>();
    const after = new Map<string, PortRules | undefined>();
    const next = new Map<string, CachedPort | undefined>();
    for (const k of candidates) {
      const sp = fs?.servicePorts.get(k);
      const cached = fr.ports.get(k);
      if (sp !== undefined && cached?.sp === sp) continue; // applied already
      if (sp === undefined && cached === undefined) continue;
      const rules = sp === undefined ? undefined : this.compile(fs!, config, sp);
      before.set(k, cached?.rules);
      after.set(k, rules);
      next.set(k, sp === undefined ? undefined : { sp, rules: rules! });
    }
    const { text, stale } = renderPartial(before, after);
    if (text !== '') {
      fr.valid = false; // until it applied
      for (const r of after.values()) for (const c of r?.owned.keys() ?? []) fr.chains.add(c);
      await this.restore(family, variant, text, false);
      fr.valid = true;
    }
    for (const c of stale) fr.chains.delete(c);
    for (const [k, p] of next) {
      const old = fr.ports.get(k);
      if (old !== undefined) countLines(old.rules, -1, fr.lines);
      if (p === undefined) fr.ports.delete(k);
      else {
        fr.ports.set(k, p);
        countLines(p.rules, 1, fr.lines);
      }
    }
    return { family, full: false, rewritten: next.size, bytes: text.length, staleChains: stale.length };
  }

  /** Whether nf_conntrack_tcp_be_liberal is set (unreadable: no, and the INVALID drop stays). */
  private async readTcpLiberal(): Promise<boolean> {
    const r = await this.run('sysctl', ['-n', 'net.netfilter.nf_conntrack_tcp_be_liberal']);
    return r.ok && r.out.trim() !== '' && r.out.trim() !== '0';
  }

  /**
   * net.ipv4.conf.all.route_localnet=1, without which a packet DNATed away from 127.0.0.1 is
   * dropped as a martian. A refusal (a read-only /proc/sys) fails the sync, as kube-proxy fails
   * to start, unless the value is 1 already.
   */
  private async ensureRouteLocalnet(): Promise<void> {
    if (this.routeLocalnet) return;
    // Read back: procps' sysctl exits 0 when a write is refused.
    const set = await this.run('sysctl', ['-w', `${ROUTE_LOCALNET}=1`]);
    const now = await this.run('sysctl', ['-n', ROUTE_LOCALNET]);
    if (!(now.ok && now.out.trim() === '1')) throw new Error(`localhost NodePorts need ${ROUTE_LOCALNET}=1, and setting it failed (${set.ok ? 'the write did not take: read-only /proc/sys?' : set.out.trim()}): set it on the node, or set iptables.localhostNodePorts: false (--iptables-localhost-nodeports=false)`);
    this.routeLocalnet = true;
  }

  private async ensureJumps(family: Family, variant: IptablesVariant, localhost: boolean): Promise<void> {
    const bin = iptablesTools(family, variant).iptables;
    const jumps = localhost ? [...JUMPS, ...LOCALHOST_JUMPS] : JUMPS;
    // Every full sync checks them (someone may have flushed a built-in chain): the checks at
    // once, each a process of its own; the missing ones inserted by one restore, in the order
    // (and so with the result) of inserting them one at a time.
    const present = await Promise.all(jumps.map(async (j) => (await this.run(bin, [...XTABLES_WAIT, '-t', j.table, '-C', j.chain, ...j.args])).ok));
    const missing = jumps.filter((_, i) => !present[i]);
    if (missing.length === 0) return;
    const tool = iptablesTools(family, variant).restore;
    const added = await this.run(tool, [...XTABLES_WAIT, '--noflush'], renderJumpInserts(missing));
    if (!added.ok) throw new Error(`${tool}: inserting ${missing.map((j) => `${j.table} ${j.chain} -j ${j.args.at(-1)}`).join(', ')}: ${added.out.trim()}`);
  }
}
