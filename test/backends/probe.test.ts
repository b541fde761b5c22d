// The kernel probe and --proxy-mode: real probes, and bpf() really denied by a seccomp filter
// (build/tools/deny-bpf) rather than a flag that pretends.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { run } from '../lab/exec.ts';
import { runPrefix } from '../lab/names.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { chooseMode, probeKernel, type ModeProbe } from '../../control/backends/probe.ts';

const MAIN = fileURLToPath(new URL('../../control/cli/main.ts', import.meta.url));
const DENY_BPF = fileURLToPath(new URL('../../build/tools/deny-bpf', import.meta.url));
const manifests = mkdtempSync(join(tmpdir(), 'switchyard-probe-'));

function cli(args: string[], denyBpf: boolean): Promise<{ code: number; out: string; err: string }> {
  const [file, argv] = denyBpf ? [DENY_BPF, [process.execPath, MAIN, ...args]] : [process.execPath, [MAIN, ...args]];
  return new Promise((resolve) => {
    execFile(file, argv, { timeout: 30_000 }, (error, stdout, stderr) => resolve({ code: error === null ? 0 : Number((error as { code?: number }).code ?? 1), out: stdout, err: stderr }));
  });
}

describe('kernel probe and --proxy-mode', () => {
  after(() => rmSync(manifests, { recursive: true, force: true }));

  it('on this machine: eBPF usable (load + tc attach), IPVS not in the kernel', async () => {
    const probes = await probeKernel();
    const by = new Map(probes.map((p) => [p.mode, p]));
    assert.equal(by.get('ebpf')?.usable, true, by.get('ebpf')?.reason);
    assert.equal(by.get('ipvs')?.usable, false);
    assert.match(by.get('ipvs')!.reason, /no IPVS in this kernel/);
  });

  it('with bpf() denied by seccomp, the probe says eBPF is not usable and why', async () => {
    const r = await cli(['probe', '--output', 'json'], true);
    assert.equal(r.code, 0, r.err);
    const ebpf = (JSON.parse(r.out) as ModeProbe[]).find((p) => p.mode === 'ebpf')!;
    assert.equal(ebpf.usable, false);
    assert.match(ebpf.reason, /Operation not permitted/);
  });

  it('auto falls back to nftables when bpf() is denied, and says why', async () => {
    // In a throwaway netns: the agent it starts writes nftables rules, which must not touch this host.
    const netns = `${runPrefix()}-probe`;
    await run('ip', ['netns', 'add', netns]);
    try {
      const child = spawn('nsenter', [`--net=/run/netns/${netns}`, '--', DENY_BPF, process.execPath, MAIN, '--proxy-mode', 'auto', '--manifests', manifests, '--healthz-bind-address', '127.0.0.1:0', '--metrics-bind-address', '127.0.0.1:0', '--logging-format=json'], { stdio: ['ignore', 'inherit', 'pipe'] });
      const lines: Array<Record<string, unknown>> = [];
      const other: string[] = [];
      try {
        // The agent logs to stderr; a generous bound so a broken start fails instead of hanging.
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`no first sync within 120 s: ${JSON.stringify(lines)} ${other.join('\n')}`)), 120_000);
          createInterface({ input: child.stderr! }).on('line', (l) => {
            if (!l.startsWith('{')) return void other.push(l);
            lines.push(JSON.parse(l) as Record<string, unknown>);
            if (lines.at(-1)!.msg === 'synced') {
              clearTimeout(timer);
              resolve();
            }
          });
          child.once('exit', (code) => {
            clearTimeout(timer);
            reject(new Error(`agent exited (${code}): ${JSON.stringify(lines)} ${other.join('\n')}`));
          });
        });
      } finally {
        child.kill('SIGKILL');
      }
      const choice = lines.find((l) => l.mode === 'nftables' && typeof l.msg === 'string' && l.msg.startsWith('auto chose'))!;
      assert.ok(choice, JSON.stringify(lines.slice(0, 3)));
      assert.match(String(choice.msg), /ebpf: not usable \(loading a BPF program failed: .*Operation not permitted/);
      assert.match(String(choice.msg), /nftables: usable \(the kernel checked a transaction/);
      assert.equal(lines.find((l) => l.msg === 'synced')?.mode, 'nftables');
      const table = await run('ip', ['netns', 'exec', netns, 'nft', 'list', 'tables']);
      assert.match(table, /table ip kube-proxy/);
    } finally {
      await run('ip', ['netns', 'del', netns]);
    }
  });

  it('an explicitly requested mode the kernel cannot do fails with what is missing', async () => {
    const ebpf = await cli(['--proxy-mode', 'ebpf', '--manifests', manifests], true);
    assert.equal(ebpf.code, 1);
    assert.match(ebpf.err, /--proxy-mode ebpf cannot work here: loading a BPF program failed/);
    const ipvs = await cli(['--proxy-mode', 'ipvs', '--manifests', manifests], false);
    assert.equal(ipvs.code, 1);
    assert.match(ipvs.err, /--proxy-mode ipvs cannot work here: no IPVS in this kernel/);
  });

  it('chooseMode: auto takes eBPF first, then the next usable built mode', () => {
    const probe = (mode: ModeProbe['mode'], usable: boolean, built: boolean): ModeProbe => ({ mode, usable, built, reason: 'r' });
    const all = [probe('ebpf', true, true), probe('nftables', true, true), probe('iptables', true, true), probe('ipvs', false, true)];
    assert.deepEqual((chooseMode('auto', all) as { mode: string }).mode, 'ebpf');
    assert.deepEqual((chooseMode('auto', [probe('ebpf', false, true), ...all.slice(1)]) as { mode: string }).mode, 'nftables');
    assert.deepEqual((chooseMode('auto', [probe('ebpf', false, true), probe('nftables', false, true), ...all.slice(2)]) as { mode: string }).mode, 'iptables');
    assert.match(String(chooseMode('kernelspace', all)), /Windows/);
    assert.match(String(chooseMode('ipvs', [probe('ipvs', true, false)])), /the kernel supports it, but this version of Switchyard does not run it yet/);
  });
});
