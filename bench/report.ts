// Benchmark reports: printed as a table and written as JSON to bench/results/<name>.json, with
// the machine, kernel, date and Node version they were measured on. bench/render.ts turns the
// results into bench/REPORT.md and its plots.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';

export const resultsDir = fileURLToPath(new URL('./results/', import.meta.url));

/** BENCH_QUICK=1: the smaller sizes and fewer rounds, so `npm run bench` fits a small machine. */
export const QUICK = process.env.BENCH_QUICK === '1';

/** Sizes for a sweep: BENCH_SIZES (comma-separated) overrides, else the quick or the full list. */
export function sizes(full: number[], quick: number[]): number[] {
  const env = process.env.BENCH_SIZES;
  if (env !== undefined && env !== '') return env.split(',').map(Number).filter((n) => Number.isInteger(n) && n > 0);
  return QUICK ? quick : full;
}

export interface Environment {
  machine: string;
  cpus: number;
  memoryGiB: number;
  kernel: string;
  date: string;
  node: string;
  quick: boolean;
  /** The 1-minute load average when the benchmark started (the machine may be shared). */
  loadAverage: number;
}

export function environment(): Environment {
  let kernel = '';
  try {
    kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  } catch {
    kernel = 'unknown';
  }
  const c = cpus();
  return {
    machine: `${c[0]?.model.trim() ?? 'unknown CPU'}, ${c.length} CPUs, ${Math.round(totalmem() / 2 ** 30)} GiB`,
    cpus: c.length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel,
    date: new Date().toISOString(),
    node: process.version,
    quick: QUICK,
    loadAverage: +loadavg()[0]!.toFixed(2),
  };
}

const started = environment();

export function writeReport(name: string, report: Record<string, unknown>): string {
  mkdirSync(resultsDir, { recursive: true });
  const path = `${resultsDir}${name}.json`;
  const seconds = +((Date.now() - Date.parse(started.date)) / 1000).toFixed(1);
  writeFileSync(path, `${JSON.stringify({ name, at: new Date().toISOString(), node: process.version, environment: { ...started, seconds }, ...report }, null, 2)}\n`);
  return path;
}

/** Runs `fn` repeatedly for about `ms` and returns operations per second. */
export function opsPerSecond(fn: () => void, ms = 1000): number {
  // Warm up for a fifth of the budget (at least 100 calls), so the optimising compiler is done.
  const warm = process.hrtime.bigint() + BigInt(ms) * 200_000n;
  for (let i = 0; i < 100 || process.hrtime.bigint() < warm; i++) fn();
  let n = 0;
  const start = process.hrtime.bigint();
  const budget = BigInt(ms) * 1_000_000n;
  while (process.hrtime.bigint() - start < budget) {
    for (let i = 0; i < 100; i++) fn();
    n += 100;
  }
  return n / (Number(process.hrtime.bigint() - start) / 1e9);
}
