// The nftables adapter: runs `nft -f -` with a rendered transaction on stdin, per family.
// The first sync, every full sync (syncPeriod) and any sync after a failure or after someone
// deleted our table rewrites the whole table against what the kernel lists; every other sync
// sends only the difference from what was applied last.
import { execFile } from 'node:child_process';
import type { Family } from '../../model/ip.ts';
import type { DesiredState } from '../../model/types.ts';
import { compileNftables, TABLE, type CompiledNft } from './compile.ts';
import { renderDiff, renderFull, setSignature, type ExistingTable, type RenderedTransaction } from './render.ts';

export type Runner = (file: string, args: string[], input?: string) => Promise<{ ok: boolean; out: string }>;

export function nftRunner(prefix: readonly string[] = []): Runner {
  return (file, args, input) =>
    new Promise((resolve) => {
      const argv = [...prefix, file, ...args];
      const child = execFile(argv[0]!, argv.slice(1), { maxBuffer: 1 << 30 }, (error, stdout, stderr) => resolve({ ok: error === null, out: error ? String(stderr || error.message) : String(stdout) }));
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(input);
    });
}

export interface NftablesOptions {
  families: readonly Family[];
  /** Prepended to every command (the lab runs nft inside a node's netns); empty in production. */
  commandPrefix?: readonly string[];
}

export interface NftSyncReport {
  full: boolean;
  families: Array<{ family: Family; full: boolean; bytes: number } & Omit<RenderedTransaction, 'text'>>;
}

interface ListedObject {
  chain?: { name: string; type?: string; hook?: string; prio?: number };
  set?: ListedSet;
  map?: ListedSet;
}
interface ListedSet {
  name: string;
  type: string | string[];
  map?: string;
  flags?: string[];
  timeout?: number;
}

/** Pure: our table's chains and sets from `nft -j -t list table`. */
export function parseListing(json: string): ExistingTable {
  const chains = new Map<string, string>();
  const sets = new Map<string, string>();
  const doc = JSON.parse(json) as { nftables: ListedObject[] };
  for (const o of doc.nftables) {
    if (o.chain !== undefined) {
      const c = o.chain;
      chains.set(c.name, c.hook !== undefined ? `type ${c.type} hook ${c.hook} priority ${c.prio}` : '');
    }
    const s = o.set ?? o.map;
    if (s !== undefined) {
      const type = (Array.isArray(s.type) ? s.type : [s.type]).join(' . ') + (s.map !== undefined ? ` : ${s.map}` : '');
      sets.set(s.name, setSignature({ kind: o.map !== undefined ? 'map' : 'set', type, flags: s.flags ?? [], timeoutSeconds: s.timeout ?? 0 }));
    }
  }
  return { chains, sets };
}

export class NftablesBackend {
  private readonly o: NftablesOptions;
  private readonly run: Runner;
  private readonly last = new Map<Family, CompiledNft>();
  /** Counted as kube-proxy counts iptables-restore failures: whole and partial. */
  syncFailures = 0;
  partialSyncFailures = 0;
  /** Every transaction sent, for tests that count what a change rewrote. */
  readonly sent: Array<{ family: Family; full: boolean; text: string }> = [];

  constructor(o: NftablesOptions, run: Runner = nftRunner(o.commandPrefix)) {
    this.o = o;
    this.run = run;
  }

  private async listTable(nftFamily: string): Promise<ExistingTable | undefined> {
    const r = await this.run('nft', ['-j', '-t', 'list', 'table', nftFamily, TABLE]);
    if (!r.ok) {
      if (/No such file or directory/.test(r.out)) return undefined;
      throw new Error(`nft list table ${nftFamily} ${TABLE}: ${r.out.trim()}`);
    }
    return parseListing(r.out);
  }

  /** Families whose table is gone (someone ran `nft flush ruleset`): only a full sync repairs that. */
  private async tablesPresent(): Promise<Set<string>> {
    const r = await this.run('nft', ['list', 'tables']);
    if (!r.ok) throw new Error(`nft list tables: ${r.out.trim()}`);
    return new Set(r.out.split('\n').map((l) => l.trim()).filter((l) => l.endsWith(` ${TABLE}`)));
  }

  async sync(state: DesiredState, full: boolean): Promise<NftSyncReport> {
    const report: NftSyncReport = { full: false, families: [] };
    const present = await this.tablesPresent();
    for (const family of this.o.families) {
      const next = compileNftables(state, family);
      const prev = this.last.get(family);
      const whole = full || prev === undefined || !present.has(`table ${next.nftFamily} ${TABLE}`);
      const tx = whole ? renderFull(next, await this.listTable(next.nftFamily)) : renderDiff(prev, next);
      if (tx.text !== '') {
        const r = await this.run('nft', ['-f', '-'], tx.text);
        if (!r.ok) {
          if (whole) this.syncFailures++;
          else this.partialSyncFailures++;
          this.last.delete(family); // the next sync rewrites the table
          throw new Error(`nft -f - (${whole ? 'full' : 'partial'} sync, IPv${family}) failed: ${r.out.trim()}`);
        }
        this.sent.push({ family, full: whole, text: tx.text });
      }
      this.last.set(family, next);
      report.full ||= whole;
      const { text, ...counts } = tx;
      report.families.push({ family, full: whole, bytes: text.length, ...counts });
    }
    return report;
  }
}
