// Runs inside the test VM (chrooted into this machine's root, read-only): executes the request's
// argv with its output and exit code written to the exchange directory.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

const request = JSON.parse(readFileSync('/mnt/request.json', 'utf8')) as { argv: string[]; cwd: string; env: Record<string, string> };
const [file, ...args] = request.argv;
const r = spawnSync(file!, args, { cwd: request.cwd, env: { ...process.env, ...request.env }, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
writeFileSync('/mnt/output.log', `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? `\nspawn error: ${r.error.message}` : ''}`);
writeFileSync('/mnt/exit', String(r.status ?? 255));
