// The README's main-job command, run exactly as documented with a bounded duration.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { leftovers } from './sweep.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

describe('npm run demo', () => {
  it('runs the agent, balances a ClusterIP and a NodePort over the pods, exits cleanly, leaves nothing', async () => {
    const output = await new Promise<string>((resolve, reject) => {
      execFile('npm', ['run', '--silent', 'demo', '--', '--duration', '2', '--connections', '30'], { cwd: root, timeout: 90_000 }, (error, stdout, stderr) =>
        error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout),
      );
    });
    const prefix = /^lab (\S+):/m.exec(output)?.[1];
    assert.ok(prefix, output);
    const rounds = output.split(/^round \d+$/m).slice(1);
    assert.ok(rounds.length >= 1, output);
    const first = rounds[0]!;
    const [vip, nodePort] = first.split(/connections from outside/);
    for (const [part, seen] of [[vip!, /saw the client as 10\.244\.0\.10$/m], [nodePort!, /saw the client as 10\.254\.0\.11$/m]] as const) {
      const rows = [...part.matchAll(/^ {2}(n\dp\d)\s+(\d+) /gm)];
      assert.equal(rows.length, 5, 'five backends listed');
      assert.equal(rows.reduce((s, r) => s + Number(r[2]), 0), 30, 'every connection answered');
      assert.ok(rows.filter((r) => Number(r[2]) > 0).length >= 3, 'spread over several pods');
      assert.match(part, /failed 0/);
      assert.match(part, seen, 'pods see the client (ClusterIP) or the node (NodePort, eTP Cluster)');
    }
    assert.match(output, /programmed \d+ frontends/);
    assert.match(output, /switchyard_service_packets_total\{service_port="demo\/echo:http\/TCP\/v4"[^}]*\} [1-9]/);
    assert.match(output, /metrics: http:\/\/127\.0\.0\.1:10249\/metrics/);
    assert.match(output, /cleaned up lab/);
    assert.deepEqual(leftovers(prefix), []);
  });
});
