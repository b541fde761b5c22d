// --cleanup for iptables mode: removes the chains kube-proxy's iptables and IPVS modes own (ours,
// or kube-proxy's of the same names) and the jumps to them, in both variants and both families,
// and nothing else. Like kube-proxy's CleanupLeftovers it leaves kubelet's chains (KUBE-FIREWALL
// with its INPUT/OUTPUT jumps, KUBE-KUBELET-CANARY, KUBE-MARK-DROP, KUBE-IPTABLES-HINT): kubelet
// made them, kubelet keeps them, and KUBE-FIREWALL's anti-martian rule protects route_localnet.
import { toolRunner, type ToolRunner } from '../tool-runner.ts';
import type { IptablesVariant } from './apply.ts';

type Runner = ToolRunner;

export function defaultRunner(prefix: readonly string[] = []): Runner {
  return toolRunner(prefix);
}

/** Chains a proxy owns, by table: kube-proxy's iptables mode's and its IPVS mode's. */
const OWNED_CHAINS: Readonly<Record<string, ReadonlySet<string>>> = {
  nat: new Set(['KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ', 'KUBE-PROXY-CANARY', 'KUBE-LOAD-BALANCER', 'KUBE-NODE-PORT']),
  filter: new Set(['KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-FORWARD', 'KUBE-NODEPORTS', 'KUBE-PROXY-FIREWALL', 'KUBE-PROXY-CANARY', 'KUBE-NODE-PORT', 'KUBE-SOURCE-RANGES-FIREWALL', 'KUBE-IPVS-FILTER', 'KUBE-IPVS-OUT-FILTER']),
  mangle: new Set(['KUBE-PROXY-CANARY']),
};

/** Per-service and per-endpoint chains (hashed names), which only a proxy writes. */
const SERVICE_CHAIN = /^KUBE-(SVC|SVL|EXT|FW|SEP)-[A-Z0-9]+$/;

/** Whether a chain of this table is a proxy's (kubelet's chains and everyone else's are not). */
export function ownedChain(table: string, chain: string): boolean {
  return OWNED_CHAINS[table]?.has(chain) === true || (table === 'nat' && SERVICE_CHAIN.test(chain));
}

/**
 * Pure: from iptables-save output, the restore input that flushes and deletes every chain a proxy
 * owns, and the rules of other chains (as -D arguments) that jump to one.
 */
export function planCleanup(saved: string): { restore: string; deletions: Array<{ table: string; args: string[] }>; chains: number } {
  const tables = new Map<string, { chains: string[] }>();
  const deletions: Array<{ table: string; args: string[] }> = [];
  let table = '';
  for (const line of saved.split('\n')) {
    if (line.startsWith('*')) {
      table = line.slice(1);
      tables.set(table, { chains: [] });
    } else if (line.startsWith(':')) {
      const chain = line.slice(1).split(' ')[0]!;
      if (ownedChain(table, chain)) tables.get(table)!.chains.push(chain);
    } else if (line.startsWith('-A ')) {
      const target = / -[jg] (\S+)/.exec(line)?.[1];
      const chain = line.split(' ')[1]!;
      if (target !== undefined && ownedChain(table, target) && !ownedChain(table, chain)) deletions.push({ table, args: splitRule(line.slice(3)) });
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
