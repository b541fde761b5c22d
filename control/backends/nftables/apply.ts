// The nftables adapter: runs `nft -f -` with a rendered transaction on stdin, per family.
// The first sync, a full sync and any sync after a failure or after someone deleted our table
// make the whole table right against what the kernel lists; every other sync sends only the
// difference from what was applied last.
import { toolRunner, type ToolRunner } from '../tool-runner.ts';
import type { Family } from '../../model/ip.ts';
import type { DesiredState } from '../../model/types.ts';
import { compileNftables, TABLE, type CompiledNft } from './compile.ts';
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
  families: Array<{ family: Family; full: boolean; bytes: number } & Omit<RenderedTransaction, 'text'>>;
}

export class NftablesBackend {
  private readonly o: NftablesOptions;
  private readonly run: Runner;
  private readonly last = new Map<Family, CompiledNft>();
  /** Counted as kube-proxy counts iptables-restore failures: whole and partial. */
  syncFailures = 0;
  partialSyncFailures = 0;
  /** Why the last partial sync failed (it was followed by a full one). */
  partialFailure: string | undefined;
  /** Every transaction sent, for tests that count what a change rewrote. */
  readonly sent: Array<{ family: Family; full: boolean; text: string }> = [];

  constructor(o: NftablesOptions, run: Runner = nftRunner(o.commandPrefix)) {
    this.o = o;
    this.run = run;
  }

  private async listTable(nftFamily: string): Promise<ExistingTable | undefined> {
    const r = await this.run('nft', ['-t', '-y', 'list', 'table', nftFamily, TABLE]);
    if (!r.ok) {
      if (/No such file or directory/.test(r.out)) return undefined;
      throw new Error(`nft list table ${nftFamily} ${TABLE}: ${r.out.trim()}`);
    }
    return parseListingText(r.out);
  }

  private async apply(family: Family, next: CompiledNft, whole: boolean): Promise<RenderedTransaction> {
    const prev = this.last.get(family);
    const tx = whole || prev === undefined ? renderFull(next, await this.listTable(next.nftFamily)) : renderDiff(prev, next);
    // A partial transaction starts with a no-op that fails when our table is gone (someone ran
    // `nft flush ruleset`), so even a sync with nothing to change notices; listing the tables
    // instead would make nft load the whole ruleset (seconds at 10k services).
    const text = whole ? tx.text : `add chain ${next.nftFamily} ${TABLE} services\n${tx.text}`;
    const r = await this.run('nft', ['-f', '-'], text);
    if (!r.ok) {
      this.last.delete(family);
      throw new Error(`nft -f - (${whole ? 'full' : 'partial'} sync, IPv${family}) failed: ${r.out.trim()}`);
    }
    if (tx.text !== '') this.sent.push({ family, full: whole, text: tx.text });
    this.last.set(family, next);
    return tx;
  }

  /**
   * `full` (or no earlier sync) rewrites against the kernel's listing; otherwise only the
   * difference goes out, and if that fails (table gone, or changed behind our back) a full
   * sync follows at once. A failed full sync throws: the runner retries.
   */
  async sync(state: DesiredState, full: boolean): Promise<NftSyncReport> {
    const report: NftSyncReport = { full: false, families: [] };
    for (const family of this.o.families) {
      const next = compileNftables(state, family);
      let whole = full || !this.last.has(family);
      let tx: RenderedTransaction;
      try {
        tx = await this.apply(family, next, whole);
      } catch (e) {
        if (whole) {
          this.syncFailures++;
          throw e;
        }
        this.partialSyncFailures++;
        this.partialFailure = (e as Error).message;
        whole = true;
        try {
          tx = await this.apply(family, next, true);
        } catch (e2) {
          this.syncFailures++;
          throw e2;
        }
      }
      report.full ||= whole;
      const { text, ...counts } = tx;
      report.families.push({ family, full: whole, bytes: text.length, ...counts });
    }
    return report;
  }
}
