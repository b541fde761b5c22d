// Removing what labs made: by name for a lab that ends normally, by dead owner for a run that
// was killed. Synchronous on purpose: it also runs from exit handlers.
import { readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { CommandError, runSync } from './exec.ts';
import { cgroup2Root, isAlive, ownerPid } from './names.ts';

const BPFFS = '/sys/fs/bpf';

function listNetns(): string[] {
  return runSync('ip', ['netns', 'list'])
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n !== '');
}

function listBpffs(): string[] {
  try {
    return readdirSync(BPFFS);
  } catch {
    return [];
  }
}

function listCgroups(): string[] {
  try {
    return readdirSync(cgroup2Root()).filter((n) => ownerPid(n) !== undefined);
  } catch {
    return [];
  }
}

/** Kills what still runs in a lab cgroup, then removes it (a cgroup goes only when empty). */
function removeCgroup(name: string): void {
  const path = `${cgroup2Root()}/${name}`;
  try {
    for (const pid of readFileSync(`${path}/cgroup.procs`, 'utf8').split('\n').filter((l) => l !== '')) killQuietly(Number(pid));
  } catch {
    return;
  }
  for (let i = 0; i < 50; i++) {
    try {
      rmdirSync(path);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20); // processes take a moment to leave
    }
  }
  rmdirSync(path);
}

/** Processes started by a lab carry "--lab <prefix>" on their command line. */
function labProcesses(): Array<{ pid: number; prefix: string }> {
  const out: Array<{ pid: number; prefix: string }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const at = argv.indexOf('--lab');
    const prefix = at >= 0 ? argv[at + 1] : undefined;
    if (prefix !== undefined) out.push({ pid: Number(entry), prefix });
  }
  return out;
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

function deleteNetns(name: string): void {
  try {
    for (const pid of runSync('ip', ['netns', 'pids', name]).split('\n').filter((l) => l !== '')) killQuietly(Number(pid));
    runSync('ip', ['netns', 'del', name]);
  } catch (e) {
    // Deleted concurrently: fine. Anything else is worth knowing about.
    if (!(e instanceof CommandError) || !/No such file|not found|Invalid netns/i.test(e.stderr)) throw e;
  }
}

function belongsTo(name: string, prefix: string): boolean {
  return name === prefix || name.startsWith(`${prefix}-`);
}

/** Removes the namespaces, processes and pins named after `prefix` (plus `extra` namespaces). */
export function teardownNamesSync(prefix: string, extra: readonly string[] = []): void {
  for (const p of labProcesses()) if (belongsTo(p.prefix, prefix)) killQuietly(p.pid);
  const names = new Set([...extra, ...listNetns().filter((n) => belongsTo(n, prefix))]);
  for (const name of names) deleteNetns(name);
  for (const entry of listBpffs()) {
    if (belongsTo(entry, prefix)) rmSync(`${BPFFS}/${entry}`, { recursive: true, force: true });
  }
  for (const cg of listCgroups()) if (belongsTo(cg, prefix)) removeCgroup(cg);
}

export async function teardownNames(prefix: string, extra: readonly string[] = []): Promise<void> {
  teardownNamesSync(prefix, extra);
}

/**
 * Removes everything a lab left behind whose owning process is dead (a run killed with
 * SIGKILL cannot clean up itself). Returns the names it removed.
 */
export function sweepStale(): string[] {
  const removed: string[] = [];
  const dead = (name: string): boolean => {
    const pid = ownerPid(name);
    return pid !== undefined && pid !== process.pid && !isAlive(pid);
  };
  for (const p of labProcesses()) {
    if (dead(`${p.prefix}-`)) {
      killQuietly(p.pid);
      removed.push(`process ${p.pid}`);
    }
  }
  for (const name of listNetns()) {
    if (dead(name)) {
      deleteNetns(name);
      removed.push(`netns ${name}`);
    }
  }
  for (const entry of listBpffs()) {
    if (dead(entry)) {
      rmSync(`${BPFFS}/${entry}`, { recursive: true, force: true });
      removed.push(`bpffs ${entry}`);
    }
  }
  for (const cg of listCgroups()) {
    if (dead(cg)) {
      removeCgroup(cg);
      removed.push(`cgroup ${cg}`);
    }
  }
  return removed;
}

/**
 * What still exists of a run with this prefix, as the system tools show it: namespaces,
 * links, pins, lab processes, iptables and nftables rules. Empty means clean.
 */
export function leftovers(prefix: string): string[] {
  const found: string[] = [];
  for (const n of listNetns()) if (n.startsWith(prefix)) found.push(`netns ${n}`);
  for (const line of runSync('ip', ['-o', 'link', 'show']).split('\n')) if (line.includes(prefix)) found.push(`link ${line}`);
  for (const e of listBpffs()) if (e.startsWith(prefix)) found.push(`bpffs ${e}`);
  for (const c of listCgroups()) if (c.startsWith(prefix)) found.push(`cgroup ${c}`);
  for (const p of labProcesses()) if (p.prefix.startsWith(prefix)) found.push(`process ${p.pid}`);
  for (const [tool, args] of [
    ['iptables-save', []],
    ['ip6tables-save', []],
    ['nft', ['list', 'ruleset']],
  ] as const) {
    for (const line of runSync(tool, args).split('\n')) if (line.includes(prefix)) found.push(`${tool}: ${line}`);
  }
  return found;
}
