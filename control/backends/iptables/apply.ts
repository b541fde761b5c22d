// The iptables adapter: feeds compiled rules to iptables-restore --noflush on stdin, rewriting only
// the chains of service ports that changed (a partial sync) unless a full sync is due (every
// syncPeriod, or when the canary chain has vanished because someone flushed the tables), and
// keeps kube-proxy's jumps in the built-in chains.
import { execFile } from 'node:child_process';
import type { Family } from '../../model/ip.ts';
import type { DesiredState } from '../../model/types.ts';
import { compileIptables, JUMPS, renderRestore, type CompiledRules } from './compile.ts';

export interface IptablesOptions {
  families: readonly Family[];
  /** Prepended to every command (the lab runs them inside a node's netns); empty in production. */
  commandPrefix?: readonly string[];
  randomFully?: boolean;
}

export interface IptablesSyncReport {
  full: boolean;
  variant: IptablesVariant;
  /** kubeproxy_sync_proxy_rules_iptables_total: rules per table, summed over families. */
  rulesPerTable: Record<string, number>;
  /** Per family: service ports whose chains were rewritten, and bytes sent to iptables-restore. */
  families: Array<{ family: Family; rewritten: number; bytes: number; staleChains: number }>;
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

export class IptablesBackend {
  private readonly o: IptablesOptions;
  private readonly last = new Map<Family, Map<string, string>>();
  private variant: IptablesVariant | undefined;
  /** kubeproxy_sync_proxy_rules_iptables_restore_failures_total / _partial_restore_failures_total */
  restoreFailures = 0;
  partialRestoreFailures = 0;
  /** Everything sent to the restore tool, for tests that count what a change rewrote. */
  readonly sent: Array<{ family: Family; text: string }> = [];

  constructor(o: IptablesOptions) {
    this.o = o;
  }

  private run(file: string, args: string[], input?: string): Promise<{ ok: boolean; out: string }> {
    const prefix = this.o.commandPrefix ?? [];
    const argv = [...prefix, file, ...args];
    return new Promise((resolve) => {
      const child = execFile(argv[0]!, argv.slice(1), { maxBuffer: 256 << 20 }, (error, stdout, stderr) => resolve({ ok: error === null, out: error ? String(stderr) : String(stdout) }));
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(input);
    });
  }

  /** True when our canary chain is gone (the tables were flushed): only a full sync repairs that. */
  async canaryMissing(): Promise<boolean> {
    const variant = await this.detected();
    for (const family of this.o.families) {
      const r = await this.run(iptablesTools(family, variant).iptables, ['-w', '-t', 'mangle', '-S', 'KUBE-PROXY-CANARY']);
      if (!r.ok) return true;
    }
    return false;
  }

  private async detected(): Promise<IptablesVariant> {
    this.variant ??= await detectVariant((f, a) => this.run(f, a));
    return this.variant;
  }

  async sync(state: DesiredState, full: boolean): Promise<IptablesSyncReport> {
    const variant = await this.detected();
    const forceFull = full || this.last.size === 0 || (await this.canaryMissing());
    const report: IptablesSyncReport = { full: forceFull, variant, rulesPerTable: { filter: 0, nat: 0 }, families: [] };
    for (const family of this.o.families) {
      const rules = compileIptables(state, family, { randomFully: this.o.randomFully ?? true });
      const now = fingerprint(rules);
      const before = this.last.get(family) ?? new Map<string, string>();
      const changed = new Set<string>();
      for (const [key, text] of now) if (forceFull || before.get(key) !== text) changed.add(key);
      const stale = staleChains(before, rules);
      const text = renderRestore(rules, forceFull ? undefined : changed, stale);
      const t = iptablesTools(family, variant);
      const r = await this.run(t.restore, ['-w', '--noflush'], text);
      if (!r.ok) {
        if (forceFull) this.restoreFailures++;
        else this.partialRestoreFailures++;
        this.last.delete(family); // the next sync is a full one
        throw new Error(`${t.restore} failed: ${r.out.trim()}`);
      }
      this.sent.push({ family, text });
      await this.ensureJumps(family, variant);
      for (const [table, chains] of rules.shared) for (const lines of chains.values()) report.rulesPerTable[table] = (report.rulesPerTable[table] ?? 0) + lines.length;
      for (const chains of rules.servicePorts.values()) for (const lines of chains.values()) report.rulesPerTable.nat = (report.rulesPerTable.nat ?? 0) + lines.length;
      this.last.set(family, now);
      report.families.push({ family, rewritten: changed.size, bytes: text.length, staleChains: stale.length });
    }
    return report;
  }

  private async ensureJumps(family: Family, variant: IptablesVariant): Promise<void> {
    const bin = iptablesTools(family, variant).iptables;
    for (const j of JUMPS) {
      const exists = await this.run(bin, ['-w', '-t', j.table, '-C', j.chain, ...j.args]);
      if (exists.ok) continue;
      const added = await this.run(bin, ['-w', '-t', j.table, '-I', j.chain, ...j.args]);
      if (!added.ok) throw new Error(`${bin} -t ${j.table} -I ${j.chain}: ${added.out.trim()}`);
    }
  }
}

/** service port -> the text of the chains it owns (what a partial sync compares). */
function fingerprint(rules: CompiledRules): Map<string, string> {
  const out = new Map<string, string>();
  for (const [key, chains] of rules.servicePorts) out.set(key, JSON.stringify([...chains]));
  return out;
}

/** Chains an earlier sync created that nothing owns now. */
function staleChains(before: Map<string, string>, rules: CompiledRules): string[] {
  const live = new Set<string>();
  for (const chains of rules.servicePorts.values()) for (const c of chains.keys()) live.add(c);
  const stale = new Set<string>();
  for (const text of before.values()) {
    for (const [chain] of JSON.parse(text) as Array<[string, string[]]>) if (!live.has(chain)) stale.add(chain);
  }
  return [...stale];
}
