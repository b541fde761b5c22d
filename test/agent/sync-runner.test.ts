// When changes reach the backend: at once for eBPF, coalesced by minSyncPeriod otherwise.
import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { SyncRunner } from '../../control/agent/sync-runner.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { DEFAULT_MODEL_CONFIG, type ChangeSet } from '../../control/model/types.ts';
import { isHealthy, type HealthSnapshot } from '../../control/server/health.ts';
import { service } from '../cases/objects.ts';

/** Lets promise callbacks of a sync run (the fake clock does not drive them). */
async function flushTurns(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

function setup(minSyncPeriodMs: number, fail: boolean | number = false): { tracker: ChangeTracker; runner: SyncRunner; calls: Array<{ changes: ChangeSet; full: boolean; at: number }> } {
  const tracker = new ChangeTracker(DEFAULT_MODEL_CONFIG);
  const calls: Array<{ changes: ChangeSet; full: boolean; at: number }> = [];
  let failures = typeof fail === 'number' ? fail : fail ? 1 : 0;
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
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
    try {
      const { tracker, runner, calls } = setup(0, true);
      tracker.upsertService(svc(1));
      runner.notify();
      mock.timers.tick(0);
      await flushTurns();
      assert.equal(calls.length, 1);
      assert.equal(runner.unappliedSince, 1_000_000, 'the failed change is still unapplied');
      mock.timers.tick(1000);
      await flushTurns();
      assert.equal(calls.length, 2);
      assert.equal(calls[1]!.full, true);
      assert.equal(runner.pendingSince, undefined);
      assert.equal(runner.unappliedSince, undefined);
    } finally {
      mock.timers.reset();
    }
  });

  it('a persistent failure backs off (1, 2, 4, 8 s ... 30 s), new changes do not hurry it, and a success resets it', async () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
    try {
      const { tracker, runner, calls } = setup(0, 7);
      tracker.upsertService(svc(1));
      runner.notify();
      // Advance in 100 ms steps for 80 s, with a change arriving every second meanwhile.
      for (let t = 0; t < 80_000; t += 100) {
        mock.timers.tick(100);
        await flushTurns();
        if (t % 1000 === 0) {
          tracker.upsertService(svc(2 + ((t / 1000) % 50)));
          runner.notify();
        }
      }
      const at = calls.map((c) => c.at - calls[0]!.at);
      // 7 failures: retries 1, 2, 4, 8, 16, 30 (capped), 30 s after each; the 8th call succeeds.
      assert.deepEqual(at, [0, 1000, 3000, 7000, 15_000, 31_000, 61_000], 'no sync between the backoff steps however many changes arrive');
      assert.ok(calls.slice(1).every((c) => c.full), 'retries are full syncs');
      assert.equal(runner.failures, 7);
      assert.equal(runner.unappliedSince, 1_000_000, 'health sees the oldest unapplied change');
      mock.timers.tick(30_000);
      await flushTurns();
      assert.equal(calls.length, 8, 'the retry after the 7th failure');
      assert.equal(runner.failures, 0, 'a success resets the backoff');
      assert.equal(runner.unappliedSince, undefined);
      tracker.upsertService(svc(99));
      runner.notify();
      mock.timers.tick(0);
      await flushTurns();
      assert.equal(calls.length, 9, 'after a success, changes are synced at once again');
    } finally {
      mock.timers.reset();
    }
  });

  it('a hung sync keeps its changes unapplied, so health turns 503 after the health timeout', async () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
    try {
      const tracker = new ChangeTracker(DEFAULT_MODEL_CONFIG);
      let release: () => void = () => {};
      const runner = new SyncRunner({ tracker, minSyncPeriodMs: 0, syncPeriodMs: 0, sync: () => new Promise<void>((r) => (release = r)) });
      tracker.upsertService(svc(1));
      runner.notify();
      mock.timers.tick(0);
      await flushTurns();
      assert.equal(runner.pendingSince, undefined, 'handed to the sync');
      const snapshot = (): HealthSnapshot => ({ now: Date.now(), lastUpdated: undefined, lastQueued: runner.unappliedSince, healthTimeoutMs: 60_000, nodeDeleting: false, nodeToBeDeleted: false, families: [4] });
      assert.equal(isHealthy(snapshot()), true, 'healthy while the sync is young');
      mock.timers.tick(60_000);
      assert.equal(isHealthy(snapshot()), false, 'the sync has hung for the health timeout');
      release();
      await flushTurns();
      assert.equal(isHealthy(snapshot()), true, 'healthy once it finished');
    } finally {
      mock.timers.reset();
    }
  });
});
