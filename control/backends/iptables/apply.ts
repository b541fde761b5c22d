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
  /** Per family: service ports whose chains were rewritten, and bytes sent to iptables-restore. */
  families: Array<{ family: Family; rewritten: number; bytes: number; staleChains: number }>;
}

const TOOLS: Record<Family, { restore: string; iptables: string }> = {
  4: { restore: 'iptables-restore', iptables: 'iptables' },
  6: { restore: 'ip6tables-restore', iptables: 'ip6tables' },
};

export class IptablesBackend {
  private readonly o: IptablesOptions;
  private readonly last = new Map<Family, Map<string, string>>();
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
    for (const family of this.o.families) {
      const r = await this.run(TOOLS[family].iptables, ['-w', '-t', 'mangle', '-S', 'KUBE-PROXY-CANARY']);
      if (!r.ok) return true;
    }
    return false;
  }

  async sync(state: DesiredState, full: boolean): Promise<IptablesSyncReport> {
    const forceFull = full || this.last.size === 0 || (await this.canaryMissing());
    const report: IptablesSyncReport = { full: forceFull, families: [] };
    for (const family of this.o.families) {
      const rules = compileIptables(state, family, { randomFully: this.o.randomFully ?? true });
      const now = fingerprint(rules);
      const before = this.last.get(family) ?? new Map<string, string>();
      const changed = new Set<string>();
      for (const [key, text] of now) if (forceFull || before.get(key) !== text) changed.add(key);
      const stale = staleChains(before, rules);
      const text = renderRestore(rules, forceFull ? undefined : changed, stale);
      const r = await this.run(TOOLS[family].restore, ['-w', '--noflush'], text);
      if (!r.ok) throw new Error(`${TOOLS[family].restore} failed: ${r.out.trim()}`);
      this.sent.push({ family, text });
      await this.ensureJumps(family);
      this.last.set(family, now);
      report.families.push({ family, rewritten: changed.size, bytes: text.length, staleChains: stale.length });
    }
    return report;
  }

  private async ensureJumps(family: Family): Promise<void> {
    const bin = TOOLS[family].iptables;
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
