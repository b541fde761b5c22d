// --kube-api-qps / --kube-api-burst: client-go's token bucket in front of every API request.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RateLimiter } from '../../control/sources/kube/transport.ts';

describe('API rate limiter', () => {
  it('lets a burst through at once, then paces requests at qps', async () => {
    const limiter = new RateLimiter(20, 3);
    const t0 = Date.now();
    for (let i = 0; i < 3; i++) await limiter.take();
    assert.ok(Date.now() - t0 < 30, 'the burst is immediate');
    for (let i = 0; i < 4; i++) await limiter.take();
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 180 && elapsed < 400, `4 more at 20/s take ~200 ms, took ${elapsed}`);
  });

  it('qps 0 means no limit', async () => {
    const limiter = new RateLimiter(0, 0);
    const t0 = Date.now();
    for (let i = 0; i < 100; i++) await limiter.take();
    assert.ok(Date.now() - t0 < 50);
  });
});
