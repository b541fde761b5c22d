// `npm run bench`: every benchmark in sequence, each in its own process writing
// bench/results/<name>.json, then the report (bench/REPORT.md, bench/report/*.svg) rendered from
// the results. A benchmark that cannot run (not root, a missing tool, a failure) leaves a results
// file saying why, which the report shows instead of figures.
//   npm run bench                      (the full sizes; root for all but decode and model)
//   BENCH_QUICK=1 npm run bench        (smaller sizes and fewer rounds)
//   BENCH_ONLY=decode,model npm run bench
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { render } from './render.ts';
import { environment, writeReport } from './report.ts';

interface Bench {
  name: string;
  args: string[];
  root: boolean;
}

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));
const BENCHES: Bench[] = [
  { name: 'decode', args: [here('./decode.ts')], root: false },
  { name: 'model', args: ['--expose-gc', here('./model.ts')], root: false },
  { name: 'datapath', args: [here('./datapath.ts')], root: true },
  { name: 'rules', args: [here('./rules.ts')], root: true },
  { name: 'rss', args: [here('./rss.ts')], root: true },
  { name: 'lab', args: [here('./lab.ts')], root: true },
  { name: 'paths', args: [here('./paths.ts')], root: true },
  { name: 'agent', args: [here('./agent.ts')], root: true },
  { name: 'snat', args: [here('./snat.ts')], root: true },
  { name: 'sync', args: [here('./sync.ts')], root: true },
  { name: 'soak', args: ['--expose-gc', here('./soak.ts')], root: true },
];
/** A benchmark running longer than this is stopped and reported as such. */
const BOUND_MS = 3_600_000;
const TAIL_LINES = 30;

function runOne(b: Bench): Promise<{ code: number | null; signal: string | null; tail: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, b.args, { stdio: ['ignore', 'inherit', 'pipe'], env: process.env });
    let tail = '';
    child.stderr!.on('data', (d: Buffer) => {
      process.stderr.write(d);
      tail = (tail + d.toString()).split('\n').slice(-TAIL_LINES).join('\n');
    });
    const timer = setTimeout(() => child.kill('SIGTERM'), BOUND_MS);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, tail: signal === 'SIGTERM' ? `stopped after ${BOUND_MS / 1000} s\n${tail}` : tail });
    });
  });
}

const only = process.env.BENCH_ONLY?.split(',').filter((s) => s !== '');
const unknown = only?.filter((n) => !BENCHES.some((b) => b.name === n)) ?? [];
if (unknown.length > 0) throw new Error(`BENCH_ONLY names no benchmark: ${unknown.join(', ')} (there are ${BENCHES.map((b) => b.name).join(', ')})`);
const root = process.getuid?.() === 0;
const summary: Array<Record<string, string | number>> = [];
console.log(`benchmarks on ${JSON.stringify(environment())}`);
for (const b of BENCHES.filter((x) => only === undefined || only.includes(x.name))) {
  const t0 = performance.now();
  if (b.root && !root) {
    writeReport(b.name, { error: 'needs root (network namespaces, BPF programs, netfilter rules); run `sudo npm run bench`' });
    summary.push({ bench: b.name, status: 'skipped: not root', seconds: 0 });
    continue;
  }
  console.log(`\n== bench:${b.name}`);
  const r = await runOne(b);
  const seconds = Math.round((performance.now() - t0) / 1000);
  if (r.code === 0) summary.push({ bench: b.name, status: 'ok', seconds });
  else {
    writeReport(b.name, { error: `exited with ${r.code ?? r.signal}:\n${r.tail}` });
    summary.push({ bench: b.name, status: `failed (${r.code ?? r.signal})`, seconds });
  }
}
console.table(summary);
console.log(`written ${render({ resultsDir: here('./results/'), plotsDir: here('./report/'), reportPath: here('./REPORT.md') }).join(', ')}`);
if (summary.some((s) => s.status !== 'ok')) process.exitCode = 1;
