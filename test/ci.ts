// A test whose environment is missing here (a package, a fixture directory, a kernel image)
// while the feature itself exists: under CI=true, where .ci/setup and the checkout must have
// provided it, it FAILS with the reason; elsewhere it is skipped with the same reason, loudly.
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';

export function environmentMissing(t: TestContext, reason: string): void {
  if (process.env.CI === 'true') assert.fail(`CI=true and the environment is missing: ${reason}`);
  t.skip(`environment missing: ${reason}`);
}
