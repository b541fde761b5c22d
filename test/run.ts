// `npm test`: the whole suite with Node's own runner, in three processes that run side by side:
// the tests on this machine's kernel (one file at a time, as their labs share the host), and the
// qemu VM boots of each Debian kernel (test/vm/vm.test.ts, one process per kernel). A VM spends
// most of its time waiting (9p reads, probe timeouts in the guest), so running the boots beside
// the host's tests shortens the suite by their length without crowding the two cores much.
// The host's output streams; each VM process's output is kept and printed whole when it ends.
// The exit code is non-zero when any of the three failed.
import { spawn } from 'node:child_process';
import { globSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { VM_SERIES } from './vm/vm.ts';

const root = fileURLToPath(new URL('../', import.meta.url));
const RUNNER = ['--test', '--test-concurrency=1', '--test-timeout=600000'];
const files = globSync('test/**/*.test.ts', { cwd: root }).sort();
const hostFiles = files.filter((f) => !f.startsWith('test/vm/'));
const vmFiles = files.filter((f) => f.startsWith('test/vm/'));

interface Run {
  name: string;
  code: Promise<number>;
  output: () => string;
}

function start(name: string, args: string[], env: Record<string, string>, stream: boolean): Run {
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks: Buffer[] = [];
  const keep = (d: Buffer, to: NodeJS.WriteStream): void => {
    if (stream) to.write(d);
    else chunks.push(d);
  };
  child.stdout!.on('data', (d: Buffer) => keep(d, process.stdout));
  child.stderr!.on('data', (d: Buffer) => keep(d, process.stderr));
  const code = new Promise<number>((resolve) => child.on('close', (c, signal) => resolve(c ?? (signal !== null ? 1 : 0))));
  return { name, code, output: () => Buffer.concat(chunks).toString() };
}

const runs: Run[] = [start('host', [...RUNNER, ...hostFiles], {}, true)];
if (vmFiles.length > 0) {
  for (const series of VM_SERIES) runs.push(start(`vm ${series}`, [...RUNNER, ...vmFiles], { SWITCHYARD_VM_SERIES: series }, false));
}
const codes = await Promise.all(runs.map((r) => r.code));
for (const r of runs.slice(1)) {
  process.stdout.write(`\n# ---- ${r.name} (test/vm, run beside the host's tests) ----\n${r.output()}`);
}
const summary = runs.map((r, i) => `${r.name}: ${codes[i] === 0 ? 'passed' : `FAILED (exit ${codes[i]})`}`).join(', ');
process.stdout.write(`\n# suite: ${summary}\n`);
process.exitCode = codes.some((c) => c !== 0) ? 1 : 0;
