// When changes reach the backend: at once for eBPF, coalesced by minSyncPeriod otherwise.
import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { SyncRunner } from '../../control/agent/sync-runner.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { DEFAULT_MODEL_CONFIG, type ChangeSet } from '../../control/model/types.ts';
import { service } from '../cases/objects.ts';

function setup(minSyncPeriodMs: number, fail = false): { tracker: ChangeTracker; runner: SyncRunner; calls: Array<{ changes: ChangeSet; full: boolean; at: number }> } {
  const tracker = new ChangeTracker(DEFAULT_MODEL_CONFIG);
  const calls: Array<{ changes: ChangeSet; full: boolean; at: number }> = [];
  let failures = fail ? 1 : 0;
  const runner = new SyncRunner({
    tracker,
    minSyncPeriodMs,
    syncPeriodMs: 0,
    sync: (changes, full) => {
      calls.push({ changes, full, at: Date.now() });
      if (failures-- > 0) throw new Error('backend refused');
    },
  });
  return { tracker, runner, calls };
}

const svc = (i: number): ReturnType<typeof service> => service({ name: `s${i}`, clusterIPs: [`10.96.4.${i}`], ports: [{ port: 80 }] });

describe('sync runner', () => {
  it('without minSyncPeriod, syncs every change on the next turn', async () => {
    const { tracker, runner, calls } = setup(0);
    tracker.upsertService(svc(1));
    runner.notify();
    await runner.idle();
    tracker.upsertService(svc(2));
    runner.notify();
    await runner.idle();
    assert.deepEqual(calls.map((c) => c.changes.upserted.map((s) => s.name)), [['s1'], ['s2']]);
    assert.equal(runner.pendingSince, undefined);
  });

  it('with minSyncPeriod, coalesces a burst into one sync and keeps syncs apart', async () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
    try {
      const { tracker, runner, calls } = setup(1000);
      runner.lastSyncAt = Date.now();
      for (let i = 1; i <= 5; i++) {
        tracker.upsertService(svc(i));
        runner.notify();
        mock.timers.tick(100);
      }
      assert.equal(calls.length, 0, 'held back by minSyncPeriod');
      assert.equal(runner.pendingSince, 1_000_000);
      mock.timers.tick(499);
      await Promise.resolve();
      assert.equal(calls.length, 0, 'still held at 999 ms');
      mock.timers.tick(1);
      await Promise.resolve();
      assert.equal(calls.length, 1, 'one sync at 1000 ms');
      assert.equal(calls[0]!.changes.upserted.length, 5, 'carrying the whole burst');
    } finally {
      mock.timers.reset();
    }
  });

  it('a failed sync stays pending and is retried as a full sync', async () => {
    const { tracker, runner, calls } = setup(0, true);
    tracker.upsertService(svc(1));
    runner.notify();
    await runner.idle();
    assert.equal(calls.length, 2);
    assert.equal(calls[1]!.full, true);
    assert.equal(runner.pendingSince, undefined);
  });
});
