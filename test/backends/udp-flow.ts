// A UDP flow whose endpoint leaves: it keeps its stale translation until the conntrack cleaner
// runs, then reaches the remaining endpoint. Shared by the rule-based modes' lab tests.
import assert from 'node:assert/strict';
import type { UdpConntrackCleaner } from '../../control/backends/conntrack-cleanup.ts';
import type { ChangeTracker } from '../../control/model/tracker.ts';
import { podOf, slices } from '../cases/semantics.ts';
import type { Lab } from '../lab/lab.ts';

/**
 * `ipvs`: IPVS itself expires a UDP flow whose real server went (expire_nodest_conn, dropping
 * the packet that finds it), so there the stale state is not observable before the cleaner.
 */
export async function udpFlowMovesOff(lab: Lab, tracker: ChangeTracker, sync: () => Promise<unknown>, cleaner: UdpConntrackCleaner, options: { ipvs?: boolean } = {}): Promise<void> {
  // web's dns port: UDP 10.96.0.10:53 -> n0p1 or n1p1 (8080), one flow from port 40053.
  const send = async (): Promise<string> => {
    const results = await lab.probe(lab.pod('n0p0').netns, { targets: [{ proto: 'udp', host: '10.96.0.10', port: 53 }], sourcePort: 40053, count: options.ipvs ? 2 : 1, timeoutMs: 3000 });
    const r = results.findLast((x) => x.ok) ?? results.at(-1);
    assert.ok(r?.ok, r?.ok ? '' : r?.error);
    return r.reply.pod;
  };
  const first = await send();
  const web = slices.find((s) => s.metadata?.name === 'web-v4')!;
  tracker.upsertSlice({ ...web, endpoints: (web.endpoints ?? []).filter((e) => podOf(e.addresses[0]!) !== first) });
  tracker.flush();
  await sync();
  if (!options.ipvs) assert.equal(await send(), first, 'without the cleaner, the flow keeps its stale translation');
  const report = await cleaner.afterSync(tracker.state());
  if (!options.ipvs) assert.ok(report.flows >= 1, JSON.stringify(report));
  const now = await send();
  assert.notEqual(now, first, 'the flow reaches the remaining endpoint');
  tracker.upsertSlice(web);
  tracker.flush();
  await sync();
  await cleaner.afterSync(tracker.state());
}
