// Benchmark reports: printed as a table and written as JSON to bench/results/<name>.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const resultsDir = fileURLToPath(new URL('./results/', import.meta.url));

export function writeReport(name: string, report: Record<string, unknown>): string {
  mkdirSync(resultsDir, { recursive: true });
  const path = `${resultsDir}${name}.json`;
  writeFileSync(path, `${JSON.stringify({ name, at: new Date().toISOString(), node: process.version, ...report }, null, 2)}\n`);
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
