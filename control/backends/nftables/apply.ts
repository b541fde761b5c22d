// The nftables adapter: runs `nft -f -` with a rendered transaction on stdin, per family.
// The first sync, a full sync and any sync after a failure or after someone deleted our table
// make the whole table right against what the kernel lists; every other sync compiles only the
// service ports that changed (named by the tracker's change set, or found by state identity
// without one) and sends the difference of just those: their chains, their sets and their
// elements in the shared maps. Compiled ports are kept and reused while a port's state object is
// the same (the tracker replaces it on every change): its identity is the port's version.
// One nft process per transaction: nft 1.0.x refetches its cache after every commit of its own,
// so a long-lived `nft -i` would pay the same (measured: ~0.35 s per command at 10k services).
import type { Family } from '../../model/ip.ts';
import { planServicePort } from '../../model/plan.ts';
import type { ChangeSet, DesiredState, FamilyState, ModelConfig, ServicePortState } from '../../model/types.ts';
import { RecentLog, toolRunner, type StoppableToolRunner, type ToolRunner } from '../tool-runner.ts';
import { assembleNft, compileNftFrame, compileNftPort, frameOptions, TABLE, type CompiledNft, type NftSet, type PortNft } from './compile.ts';
import { parseListingText, type ExistingTable } from './listing.ts';
import { renderDiff, renderFull, type RenderedTransaction } from './render.ts';

export type Runner = ToolRunner;
export const nftRunner = toolRunner;

export interface NftablesOptions {
  families: readonly Family[];
  /** Prepended to every command (the lab runs nft inside a node's netns); empty in production. */
  commandPrefix?: readonly string[];
}

export interface NftSyncReport {
  full: boolean;
  families: Array<{ family: Family; full: boolean; bytes: number; servicePorts: number } & Omit<RenderedTransaction, 'text'>>;
}

interface CachedPort {
  sp: ServicePortState;
  nft: PortNft;
}

/** What a family's table was compiled from, beside the ports: when it changes, the whole table is redone. */
function familyKey(fs: FamilyState | undefined, config: ModelConfig): string {
  if (fs === undefined) return '';
  const d = fs.localDetector;
  const np = fs.nodePortAddresses;
  return [d.mode, d.interfaceName, ...d.cidrs, '|', np.all, ...np.addresses, '|', config.masqueradeAll, config.masqueradeBit, '|', ...(fs.serviceCIDRs ?? [])].join(' ');
}

class FamilyTable {
  ports = new Map<string, CachedPort>();
  /** Shared set or map -> element key -> port key -> what follows the key: who holds each element. */
  holders = new Map<string, Map<string, Map<string, string>>>();
  frame: CompiledNft | undefined;
  key = '';
  config: ModelConfig | undefined;
  valid = false;

  /** An element's value as the whole table has it: the port sorting last wins, as in assembleNft. */
  static effective(holders: ReadonlyMap<string, string> | undefined): string | undefined {
    if (holders === undefined || holders.size === 0) return undefined;
    let best: string | undefined;
    for (const k of holders.keys()) if (best === undefined || k > best) best = k;
    return holders.get(best!);
  }

  hold(portKey: string, nft: PortNft, on: boolean): void {
    for (const [set, k, v] of nft.elements) {
      let byKey = this.holders.get(set);
      if (byKey === undefined) this.holders.set(set, (byKey = new Map()));
      let ports = byKey.get(k);
      if (ports === undefined) byKey.set(k, (ports = new Map()));
      if (on) ports.set(portKey, v);
      else {
        ports.delete(portKey);
        if (ports.size === 0) byKey.delete(k);
      }
    }
  }
}

export class NftablesBackend {
  private readonly o: NftablesOptions;
  private readonly run: Runner;
  private readonly tables = new Map<Family, FamilyTable>();
  /** Counted as kube-proxy counts iptables-restore failures: whole and partial. */
  syncFailures = 0;
  partialSyncFailures = 0;
  /** Why the last partial sync failed (it was followed by a full one). */
  partialFailure: string | undefined;
  /** The last transactions sent (bounded), for tests that count what a change rewrote. */
  readonly sent = new RecentLog<{ family: Family; full: boolean; text: string }>();

  constructor(o: NftablesOptions, run: Runner = nftRunner(o.commandPrefix)) {
    this.o = o;
    this.run = run;
    for (const f of o.families) this.tables.set(f, new FamilyTable());
  }

  /** Kills a running nft (SIGTERM of the agent); the backend runs nothing after. */
  stop(): void {
    (this.run as Partial<StoppableToolRunner>).stop?.();
  }

  private async listTable(nftFamily: string): Promise<ExistingTable | undefined> {
    const r = await this.run('nft', ['-t', '-y', 'list', 'table', nftFamily, TABLE]);
    if (!r.ok) {
      if (/No such file or directory/.test(r.out)) return undefined;
      throw new Error(`nft list table ${nftFamily} ${TABLE}: ${r.out.trim()}`);
    }
    return parseListingText(r.out);
  }

  private async send(family: Family, text: string, full: boolean, record: string): Promise<void> {
    const r = await this.run('nft', ['-f', '-'], text);
    if (!r.ok) throw new Error(`nft -f - (${full ? 'full' : 'partial'} sync, IPv${family}) failed: ${r.out.trim()}`);
    if (record !== '') this.sent.push({ family, full, text: record });
  }

  /**
   * `full` (or no earlier sync) rewrites against the kernel's listing; otherwise only the
   * changed service ports go out, and if that fails (table gone, or changed behind our back) a
   * full sync follows at once. A failed full sync throws: the runner retries.
   */
  async sync(state: DesiredState, full: boolean, changes?: ChangeSet): Promise<NftSyncReport> {
    const report: NftSyncReport = { full: false, families: [] };
    for (const family of this.o.families) {
      const t = this.tables.get(family)!;
      const fs = state.families.get(family);
      const key = familyKey(fs, state.config);
      let whole = full || !t.valid || key !== t.key || t.config !== state.config;
      let line: NftSyncReport['families'][number] | undefined;
      if (!whole) {
        try {
          line = await this.partial(family, t, fs, state.config, changes);
        } catch (e) {
          this.partialSyncFailures++;
          this.partialFailure = (e as Error).message;
          whole = true;
        }
      }
      if (whole) {
        try {
          line = await this.whole(family, t, fs, state.config, key);
        } catch (e) {
          this.syncFailures++;
          throw e;
        }
      }
      report.full ||= whole;
      report.families.push(line!);
    }
    return report;
  }

  private compile(fs: FamilyState, config: ModelConfig, sp: ServicePortState): PortNft {
    return compileNftPort(planServicePort(sp, fs, config, 'nftables'), fs);
  }

  private async whole(family: Family, t: FamilyTable, fs: FamilyState | undefined, config: ModelConfig, key: string): Promise<NftSyncReport['families'][number]> {
    const reuse = t.valid && key === t.key && t.config === config;
    const ports = new Map<string, CachedPort>();
    for (const sp of fs === undefined ? [] : [...fs.servicePorts.values()].sort((a, b) => (a.key < b.key ? -1 : 1))) {
      const cached = t.ports.get(sp.key);
      ports.set(sp.key, { sp, nft: reuse && cached?.sp === sp ? cached.nft : this.compile(fs!, config, sp) });
    }
    const next = assembleNft(fs, family, [...ports.values()].map((p) => p.nft), frameOptions(config, fs));
    t.valid = false;
    const tx = renderFull(next, await this.listTable(next.nftFamily));
    await this.send(family, tx.text, true, tx.text);
    const fresh = new FamilyTable();
    for (const [k, p] of ports) fresh.hold(k, p.nft, true);
    Object.assign(t, { ports, holders: fresh.holders, frame: compileNftFrame(fs, family, frameOptions(config, fs)), key, config, valid: true });
    const { text, ...counts } = tx;
    return { family, full: true, bytes: text.length, servicePorts: ports.size, ...counts };
  }

  private async partial(family: Family, t: FamilyTable, fs: FamilyState | undefined, config: ModelConfig, changes: ChangeSet | undefined): Promise<NftSyncReport['families'][number]> {
    const candidates = new Set<string>();
    if (changes !== undefined) {
      for (const sp of [...changes.upserted, ...changes.removed]) if (sp.family === family) candidates.add(sp.key);
    } else {
      for (const [k, sp] of fs?.servicePorts ?? []) if (t.ports.get(k)?.sp !== sp) candidates.add(k);
      for (const k of t.ports.keys()) if (!fs?.servicePorts.has(k)) candidates.add(k);
    }
    const next = new Map<string, CachedPort | undefined>();
    for (const k of candidates) {
      const sp = fs?.servicePorts.get(k);
      const cached = t.ports.get(k);
      if (sp !== undefined && cached?.sp === sp) continue; // applied already
      if (sp === undefined && cached === undefined) continue;
      next.set(k, sp === undefined ? undefined : { sp, nft: this.compile(fs!, config, sp) });
    }
    const frame = t.frame!;
    const { prev, after } = this.minis(t, frame, next);
    const tx = renderDiff(prev, after);
    // The transaction starts with a no-op that fails when our table is gone (someone ran `nft
    // flush ruleset`), so even a sync with nothing to change notices; listing the tables instead
    // would make nft load the whole ruleset (seconds at 10k services).
    t.valid = false;
    await this.send(family, `add chain ${frame.nftFamily} ${TABLE} services\n${tx.text}`, false, tx.text);
    t.valid = true;
    for (const [k, p] of next) {
      const old = t.ports.get(k);
      if (old !== undefined) t.hold(k, old.nft, false);
      if (p === undefined) t.ports.delete(k);
      else {
        t.ports.set(k, p);
        t.hold(k, p.nft, true);
      }
    }
    const { text, ...counts } = tx;
    return { family, full: false, bytes: text.length, servicePorts: next.size, ...counts };
  }

  /**
   * The changed ports' share of the table before and after, as two small compiled tables that
   * renderDiff compares: their chains and sets, and the shared sets' elements they touch with
   * the value the whole table gives each (another port may hold the same element).
   */
  private minis(t: FamilyTable, frame: CompiledNft, next: ReadonlyMap<string, CachedPort | undefined>): { prev: CompiledNft; after: CompiledNft } {
    const empty = (): { chains: Map<string, readonly string[]>; sets: Map<string, NftSet>; elements: Map<string, Map<string, string>> } => ({
      chains: new Map(),
      sets: new Map([...frame.sets].filter(([, s]) => !s.dynamic)),
      elements: new Map(),
    });
    const prev = empty();
    const after = empty();
    const touched = new Map<string, Set<string>>();
    const touch = (nft: PortNft | undefined): void => {
      for (const [set, k] of nft?.elements ?? []) {
        let keys = touched.get(set);
        if (keys === undefined) touched.set(set, (keys = new Set()));
        keys.add(k);
      }
    };
    for (const [k, p] of next) {
      const old = t.ports.get(k)?.nft;
      touch(old);
      touch(p?.nft);
      for (const [c, rules] of old?.chains ?? []) prev.chains.set(c, rules);
      for (const [n, s] of old?.sets ?? []) prev.sets.set(n, s);
      for (const [c, rules] of p?.nft.chains ?? []) after.chains.set(c, rules);
      for (const [n, s] of p?.nft.sets ?? []) after.sets.set(n, s);
    }
    for (const [set, keys] of touched) {
      const before = new Map<string, string>();
      const now = new Map<string, string>();
      for (const k of keys) {
        const holders = t.holders.get(set)?.get(k);
        const was = FamilyTable.effective(holders);
        if (was !== undefined) before.set(k, was);
        const changed = new Map(holders ?? []);
        for (const portKey of next.keys()) changed.delete(portKey);
        for (const [portKey, p] of next) for (const [s, ek, v] of p?.nft.elements ?? []) if (s === set && ek === k) changed.set(portKey, v);
        const is = FamilyTable.effective(changed);
        if (is !== undefined) now.set(k, is);
      }
      prev.elements.set(set, before);
      after.elements.set(set, now);
    }
    const base = { family: frame.family, nftFamily: frame.nftFamily, baseChains: new Map<string, string>() };
    return { prev: { ...base, ...prev }, after: { ...base, ...after } };
  }
}
