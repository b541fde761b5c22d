// --kube-api-qps / --kube-api-burst: client-go's token bucket in front of every API request.
// On a fake clock: the pacing is exact and a loaded machine cannot change it.
import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { RateLimiter } from '../../control/sources/kube/transport.ts';

/** Takes `n` tokens one after another, recording the fake clock's time of each grant. */
async function grants(limiter: RateLimiter, n: number, start: number): Promise<number[]> {
  const at: number[] = [];
  let done = false;
  const run = (async () => {
    for (let i = 0; i < n; i++) {
      await limiter.take();
      at.push(Date.now() - start);
    }
    done = true;
  })();
  for (let guard = 0; !done && guard < 100_000; guard++) {
    for (let i = 0; i < 1000 && !done; i++) await Promise.resolve();
    if (!done) mock.timers.tick(1);
  }
  await run;
  return at;
}

describe('API rate limiter', () => {
  it('lets a burst through at once, then paces requests at qps', async () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
    try {
      const limiter = new RateLimiter(20, 3);
      const at = await grants(limiter, 7, 1_000_000);
      assert.deepEqual(at.slice(0, 3), [0, 0, 0], 'the burst is immediate');
      assert.deepEqual(at.slice(3), [50, 100, 150, 200], 'then one every 50 ms at 20/s');
    } finally {
      mock.timers.reset();
    }
  });

  it('qps 0 means no limit', async () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
    try {
      const at = await grants(new RateLimiter(0, 0), 100, 1_000_000);
      assert.ok(at.every((t) => t === 0), 'all 100 granted without the clock moving');
    } finally {
      mock.timers.reset();
    }
  });
});
