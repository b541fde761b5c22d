// The rule-mode adapters' children never hang the agent: a tool that hangs is killed after its
// timeout (the sync fails with the reason) and the next sync repairs; stop() and SIGTERM kill a
// running tool at once. The hung tool is a real process (a script that sleeps) in place of nft
// or iptables-restore, run through the same runner as the real tools.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { IptablesBackend } from '../../control/backends/iptables/apply.ts';
import { NftablesBackend } from '../../control/backends/nftables/apply.ts';
import { toolRunner, type ToolRunner } from '../../control/backends/tool-runner.ts';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { DEFAULT_MODEL_CONFIG } from '../../control/model/types.ts';
import { service, slice } from '../cases/objects.ts';
import { run } from '../lab/exec.ts';
import { inNetns } from '../lab/lab.ts';
import { runPrefix } from '../lab/names.ts';
import { until } from '../wait.ts';

const netns = `${runPrefix()}-hung`;
const dir = mkdtempSync(join(tmpdir(), `${runPrefix()}-hung-`));
const hung = join(dir, 'hung-tool');
const pidFile = `${hung}.pids`;
writeFileSync(hung, '#!/bin/sh\necho $$ >> "$0.pids"\nexec sleep 600\n');
chmodSync(hung, 0o755);

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const pids = (): number[] => (existsSync(pidFile) ? readFileSync(pidFile, 'utf8').trim().split('\n').filter((l) => l !== '').map(Number) : []);

function tracker(): ChangeTracker {
  const t = new ChangeTracker({ ...DEFAULT_MODEL_CONFIG, families: [4], clusterCIDRs: ['10.244.0.0/16'], detectLocalMode: 'ClusterCIDR' }, nodeFacts('n0', { metadata: { name: 'n0' }, status: { addresses: [{ type: 'InternalIP', address: '10.254.0.11' }] } }));
  t.upsertService(service({ ns: 'demo', name: 'web', clusterIPs: ['10.96.0.20'], ports: [{ port: 80, targetPort: 8080 }] }));
  t.upsertSlice(slice({ ns: 'demo', name: 'web-x', service: 'web', ports: [{ port: 8080 }], endpoints: [{ ip: '10.244.1.5', node: 'n1' }] }));
  t.flush();
  return t;
}

/**
 * The real tools in the netns, but the next `hangs` calls of `tool` run the hung script (with a
 * 300 ms timeout) instead.
 */
function sometimesHung(tool: string): { run: ToolRunner; hangs: number } {
  const real = toolRunner(inNetns(netns));
  const fake = toolRunner([], { timeoutMs: 300, timeoutPerKiBMs: 0 });
  const state = {
    hangs: 0,
    run: (file: string, args: string[], input?: string) => {
      if (file === tool && state.hangs > 0) {
        state.hangs--;
        return fake(hung, args, input);
      }
      return real(file, args, input);
    },
  };
  return state;
}

describe('rule-mode tools: timeouts, stop and SIGTERM', () => {
  before(() => run('ip', ['netns', 'add', netns]));
  after(async () => {
    for (const pid of pids()) if (alive(pid)) process.kill(pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    await run('ip', ['netns', 'del', netns]).catch(() => undefined);
  });

  it('a hung tool is killed after its timeout, and says so', async () => {
    const before = pids().length;
    const r = await toolRunner([], { timeoutMs: 300, timeoutPerKiBMs: 0 })(hung, []);
    assert.equal(r.ok, false);
    assert.equal(r.timedOut, true);
    assert.match(r.out, /killed after 300 ms \(timeout\)/);
    const pid = pids()[before]!;
    await until('the hung tool to be gone', () => !alive(pid), 10_000);
  });

  it('stop() kills a running tool at once and refuses new ones', async () => {
    const runner = toolRunner([], { timeoutMs: 600_000 });
    const before = pids().length;
    const pending = runner(hung, []);
    await until('the tool to start', () => pids().length > before, 10_000);
    runner.stop();
    const r = await pending;
    assert.equal(r.ok, false);
    assert.notEqual(r.timedOut, true);
    await until('the tool to be gone', () => !alive(pids()[before]!), 10_000);
    assert.equal((await runner('true', [])).ok, false, 'nothing runs after stop()');
  });

  it('SIGTERM to the process kills its running tool and the process still ends', async () => {
    const script = join(dir, 'child.ts');
    const runnerPath = fileURLToPath(new URL('../../control/backends/tool-runner.ts', import.meta.url));
    writeFileSync(script, `import { toolRunner } from ${JSON.stringify(runnerPath)};\nawait toolRunner([], { timeoutMs: 600_000 })(${JSON.stringify(hung)}, []);\n`);
    const before = pids().length;
    const child = spawn(process.execPath, [script], { stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    await until('the tool to start', () => pids().length > before, 10_000);
    child.kill('SIGTERM');
    assert.equal(await exited, 'SIGTERM', 'the process ends as SIGTERM asks');
    await until('the tool to be gone', () => !alive(pids()[before]!), 10_000);
  });

  it('nftables: a hung nft fails the sync with a timeout, and the next sync repairs', async () => {
    const t = tracker();
    const tools = sometimesHung('nft');
    const b = new NftablesBackend({ families: [4] }, tools.run);
    await b.sync(t.state(), true);
    t.upsertSlice(slice({ ns: 'demo', name: 'web-x', service: 'web', ports: [{ port: 8080 }], endpoints: [{ ip: '10.244.1.6', node: 'n1' }] }));
    const changes = t.flush();
    tools.hangs = 2; // the partial transaction, then the listing of the full one that follows it at once
    await assert.rejects(b.sync(t.state(), false, changes), /timeout/);
    assert.equal(b.partialSyncFailures, 1);
    tools.hangs = 0;
    const report = await b.sync(t.state(), false, { ...changes, upserted: [], removed: [] });
    assert.equal(report.full, true, 'after a failure the next sync is a whole one');
    const table = await run('nsenter', [`--net=/run/netns/${netns}`, '--', 'nft', 'list', 'table', 'ip', 'kube-proxy']);
    assert.match(table, /dnat to 10\.244\.1\.6:8080/);
    assert.doesNotMatch(table, /10\.244\.1\.5/);
    await run('nsenter', [`--net=/run/netns/${netns}`, '--', 'nft', 'delete', 'table', 'ip', 'kube-proxy']);
  });

  it('iptables: a hung iptables-restore fails the sync with a timeout, and the next sync repairs', async () => {
    const t = tracker();
    const tools = sometimesHung('iptables-nft-restore');
    const b = new IptablesBackend({ families: [4], run: tools.run });
    await b.sync(t.state(), true);
    t.upsertSlice(slice({ ns: 'demo', name: 'web-x', service: 'web', ports: [{ port: 8080 }], endpoints: [{ ip: '10.244.1.6', node: 'n1' }] }));
    const changes = t.flush();
    tools.hangs = 2; // the partial restore and the full one that follows it at once
    await assert.rejects(b.sync(t.state(), false, changes), /timeout/);
    assert.equal(b.partialRestoreFailures, 1);
    assert.equal(b.restoreFailures, 1);
    const report = await b.sync(t.state(), false, { ...changes, upserted: [], removed: [] });
    assert.equal(report.full, true, 'after a failure the next sync is a whole one');
    const saved = await run('nsenter', [`--net=/run/netns/${netns}`, '--', 'iptables-save', '-t', 'nat']);
    assert.match(saved, /--to-destination 10\.244\.1\.6:8080/);
    assert.doesNotMatch(saved, /10\.244\.1\.5/);
  });
});
