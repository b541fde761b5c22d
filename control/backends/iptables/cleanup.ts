// --cleanup for iptables mode: removes every KUBE-* chain (ours, or kube-proxy's of the same
// names) and the jumps to them from the built-in chains, in both variants and both families, and
// nothing else.
import { toolRunner, type ToolRunner } from '../tool-runner.ts';
import type { IptablesVariant } from './apply.ts';

type Runner = ToolRunner;

export function defaultRunner(prefix: readonly string[] = []): Runner {
  return toolRunner(prefix);
}

/**
 * Pure: from iptables-save output, the restore input that flushes and deletes every KUBE-* chain,
 * and the built-in-chain rules (as -D arguments) that jump to one.
 */
export function planCleanup(saved: string): { restore: string; deletions: Array<{ table: string; args: string[] }>; chains: number } {
  const tables = new Map<string, { chains: string[] }>();
  const deletions: Array<{ table: string; args: string[] }> = [];
  let table = '';
  for (const line of saved.split('\n')) {
    if (line.startsWith('*')) {
      table = line.slice(1);
      tables.set(table, { chains: [] });
    } else if (line.startsWith(':KUBE-')) {
      tables.get(table)!.chains.push(line.slice(1).split(' ')[0]!);
    } else if (line.startsWith('-A ') && / -j KUBE-[A-Z0-9-]+(\s|$)/.test(line)) {
      const chain = line.split(' ')[1]!;
      if (!chain.startsWith('KUBE-')) deletions.push({ table, args: splitRule(line.slice(3)) });
    }
  }
  const out: string[] = [];
  let chains = 0;
  for (const [name, t] of tables) {
    if (t.chains.length === 0) continue;
    out.push(`*${name}`, ...t.chains.map((c) => `:${c} - [0:0]`), ...t.chains.map((c) => `-X ${c}`), 'COMMIT');
    chains += t.chains.length;
  }
  return { restore: out.length > 0 ? `${out.join('\n')}\n` : '', deletions, chains };
}

/** Splits an iptables-save rule into arguments, honouring the quotes around comments. */
export function splitRule(rule: string): string[] {
  const args: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(rule); m !== null; m = re.exec(rule)) args.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!);
  return args;
}

export async function cleanupIptables(run: Runner = defaultRunner()): Promise<{ chains: number; jumps: number }> {
  let chains = 0;
  let jumps = 0;
  for (const variant of ['nft', 'legacy'] as IptablesVariant[]) {
    for (const base of ['iptables', 'ip6tables']) {
      const saved = await run(`${base}-${variant}-save`, []);
      if (!saved.ok) continue;
      const plan = planCleanup(saved.out);
      for (const d of plan.deletions) {
        const [chain, ...rest] = d.args;
        if ((await run(`${base}-${variant}`, ['-w', '5', '-t', d.table, '-D', chain!, ...rest])).ok) jumps++;
      }
      if (plan.restore !== '') {
        const r = await run(`${base}-${variant}-restore`, ['-w', '5', '--noflush'], plan.restore);
        if (!r.ok) throw new Error(`${base}-${variant}-restore: ${r.out.trim()}`);
        chains += plan.chains;
      }
    }
  }
  return { chains, jumps };
}
