// --cleanup for nftables mode: deletes the "kube-proxy" table of each family (ours, or
// kube-proxy's own of that name) and the eBPF agent's NAT hold table (below), and nothing else;
// other tables are never touched.
import { TABLE } from './compile.ts';
import { nftRunner, type Runner } from './apply.ts';

/**
 * A table of ours with one empty NAT base chain per family. Netfilter translates a tracked flow's
 * packets from its conntrack entry, but only while some NAT chain of the family is registered:
 * deleting kube-proxy's table (the only one, in nftables mode) would stop the translation of the
 * flows it opened. The eBPF agent keeps this table while such flows live (takeover.ts).
 */
export const NAT_HOLD_TABLE = 'switchyard-nat-hold';

export function natHoldInput(families: readonly string[]): string {
  return families.map((f) => `add table ${f} ${NAT_HOLD_TABLE}\nadd chain ${f} ${NAT_HOLD_TABLE} hold { type nat hook postrouting priority 100; policy accept; }\n`).join('');
}

export async function cleanupNftables(run: Runner = nftRunner(), o: { keepNatHold?: boolean } = {}): Promise<{ tables: string[] }> {
  const listed = await run('nft', ['list', 'tables']);
  if (!listed.ok) return { tables: [] }; // no nftables here: nothing of ours either
  const names = o.keepNatHold === true ? [TABLE] : [TABLE, NAT_HOLD_TABLE];
  const ours = listed.out.split('\n').map((l) => l.trim().split(/\s+/)).filter((w) => w[0] === 'table' && (w[1] === 'ip' || w[1] === 'ip6') && names.includes(w[2]!));
  if (ours.length === 0) return { tables: [] };
  const r = await run('nft', ['-f', '-'], ours.map((w) => `delete table ${w[1]} ${w[2]}\n`).join(''));
  if (!r.ok) throw new Error(`nft: deleting the ${names.join(', ')} tables failed: ${r.out.trim()}`);
  return { tables: ours.map((w) => `${w[1]} ${w[2]}`) };
}

/** The families ("ip", "ip6") that have kube-proxy's nftables table. */
export async function kubeProxyTableFamilies(run: Runner = nftRunner()): Promise<string[]> {
  const listed = await run('nft', ['list', 'tables']);
  if (!listed.ok) return [];
  return listed.out.split('\n').map((l) => l.trim().split(/\s+/)).filter((w) => w[0] === 'table' && (w[1] === 'ip' || w[1] === 'ip6') && w[2] === TABLE).map((w) => w[1]!);
}
