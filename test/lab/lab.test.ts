// The lab itself: reachability as designed, and nothing left behind after teardown, also when
// the process that built it was killed.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Lab } from './lab.ts';
import type { ProbeTarget } from './probe.ts';
import { leftovers, sweepStale } from './sweep.ts';

describe('lab: 2 nodes x 3 pods', () => {
  let lab: Lab;

  before(async () => {
    lab = await Lab.create({ nodes: 2, podsPerNode: 3 });
  });

  after(async () => {
    await lab?.teardown();
  });

  it('every pod reaches every other pod over IPv4 and IPv6, TCP and UDP, unchanged', async () => {
    await Promise.all(
      lab.pods.map(async (from) => {
        const targets: ProbeTarget[] = lab.pods
          .filter((to) => to !== from)
          .flatMap((to) => [
            { proto: 'tcp', host: to.ipv4, port: 8080 },
            { proto: 'tcp', host: to.ipv6, port: 8080 },
            { proto: 'udp', host: to.ipv4, port: 8080 },
            { proto: 'udp', host: to.ipv6, port: 8080 },
          ]);
        const results = await lab.probe(from.netns, { targets });
        assert.equal(results.length, 20);
        for (const r of results) {
          assert.ok(r.ok, `${from.name} -> ${r.target.host} ${r.target.proto}: ${r.ok ? '' : r.error}`);
          const to = lab.pods.find((p) => p.ipv4 === r.target.host || p.ipv6 === r.target.host)!;
          assert.equal(r.reply.pod, to.name);
          assert.equal(r.reply.client, r.target.host.includes(':') ? from.ipv6 : from.ipv4, 'no translation between pods');
        }
      }),
    );
  });

  it('the external client reaches node addresses but no pod', async () => {
    const targets: ProbeTarget[] = lab.nodes.flatMap((n) => [
      { proto: 'tcp', host: n.ipv4, port: 8080 },
      { proto: 'tcp', host: n.ipv6, port: 8080 },
    ]);
    const toNodes = await lab.probe(lab.external.netns, { targets });
    for (const r of toNodes) assert.ok(r.ok && r.reply.client === (r.target.host.includes(':') ? lab.external.ipv6 : lab.external.ipv4));
    const toPods = await lab.probe(lab.external.netns, {
      targets: [
        { proto: 'tcp', host: lab.pods[0]!.ipv4, port: 8080 },
        { proto: 'tcp', host: lab.pods[0]!.ipv6, port: 8080 },
      ],
      timeoutMs: 500,
    });
    for (const r of toPods) assert.equal(r.ok, false, `pod ${r.target.host} must not be reachable from outside`);
  });

  it('teardown leaves nothing in ip netns, ip link, bpffs, iptables or nftables', async () => {
    const extra = await Lab.create({ nodes: 1, podsPerNode: 2, tag: 'x' });
    assert.notDeepEqual(leftovers(extra.prefix), [], 'the lab is visible before teardown');
    await extra.teardown();
    assert.deepEqual(leftovers(extra.prefix), []);
  });
});

describe('lab: a run killed with SIGKILL', () => {
  it('is swept by the next run', async () => {
    const script = fileURLToPath(new URL('./fixtures/hold-lab.ts', import.meta.url));
    const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout }).once('line', resolve);
      child.once('exit', (code) => reject(new Error(`hold-lab exited early (${code})`)));
    });
    const { prefix } = JSON.parse(line) as { prefix: string };
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    const left = leftovers(prefix);
    assert.ok(left.some((l) => l.startsWith('netns')), 'namespaces outlive a killed run');
    assert.ok(left.some((l) => l.startsWith('bpffs')), 'pins outlive a killed run');
    const removed = sweepStale();
    assert.ok(removed.some((r) => r.includes(prefix)));
    assert.deepEqual(leftovers(prefix), []);
  });
});
