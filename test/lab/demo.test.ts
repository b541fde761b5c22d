// The README's main-job command, run exactly as documented with a bounded duration.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { leftovers } from './sweep.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

describe('npm run demo', () => {
  it('balances a VIP over the pods, exits cleanly and leaves nothing behind', async () => {
    const output = await new Promise<string>((resolve, reject) => {
      execFile('npm', ['run', '--silent', 'demo', '--', '--duration', '2', '--connections', '30'], { cwd: root, timeout: 60_000 }, (error, stdout, stderr) =>
        error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout),
      );
    });
    const prefix = /^lab (\S+):/m.exec(output)?.[1];
    assert.ok(prefix, output);
    const rounds = output.split(/^round \d+:/m).slice(1);
    assert.ok(rounds.length >= 1, output);
    const first = rounds[0]!;
    const rows = [...first.matchAll(/^ {2}(n\dp\d)\s+tcp\s+(\d+)\s+udp\s+(\d+)/gm)];
    assert.equal(rows.length, 5, 'five backends listed');
    const total = rows.reduce((s, r) => s + Number(r[2]) + Number(r[3]), 0);
    assert.equal(total, 60, 'every connection answered');
    assert.ok(rows.filter((r) => Number(r[2]) + Number(r[3]) > 0).length >= 3, 'spread over several pods');
    assert.match(first, /failed 0/);
    assert.match(output, /cleaned up lab/);
    assert.deepEqual(leftovers(prefix), []);
  });
});
