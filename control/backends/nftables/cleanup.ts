// --cleanup for nftables mode: deletes the "kube-proxy" table of each family (ours, or
// kube-proxy's own of that name) and nothing else; other tables are never touched.
import { TABLE } from './compile.ts';
import { nftRunner, type Runner } from './apply.ts';

export async function cleanupNftables(run: Runner = nftRunner()): Promise<{ tables: string[] }> {
  const listed = await run('nft', ['list', 'tables']);
  if (!listed.ok) return { tables: [] }; // no nftables here: nothing of ours either
  const ours = listed.out.split('\n').map((l) => l.trim().split(/\s+/)).filter((w) => w[0] === 'table' && (w[1] === 'ip' || w[1] === 'ip6') && w[2] === TABLE);
  if (ours.length === 0) return { tables: [] };
  const r = await run('nft', ['-f', '-'], ours.map((w) => `delete table ${w[1]} ${TABLE}\n`).join(''));
  if (!r.ok) throw new Error(`nft: deleting the ${TABLE} tables failed: ${r.out.trim()}`);
  return { tables: ours.map((w) => `${w[1]} ${TABLE}`) };
}
