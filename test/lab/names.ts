// Per-run names. Everything the lab creates is named "syl<pid in base 36>-...", so a later run
// can tell whether its creator still lives and sweep what a killed run left behind.
import { readFileSync } from 'node:fs';

const PATTERN = /^syl([0-9a-z]+)-/;

export function runPrefix(pid: number = process.pid): string {
  return `syl${pid.toString(36)}`;
}

/** The pid encoded in a lab name, or undefined for names that are not ours. */
export function ownerPid(name: string): number | undefined {
  const m = PATTERN.exec(name);
  return m?.[1] === undefined ? undefined : parseInt(m[1], 36);
}

/** True while a Node process with this pid runs (a recycled pid of another program does not count). */
export function isAlive(pid: number): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return /node/.test(cmdline.split('\0')[0] ?? '');
  } catch {
    return false;
  }
}

/** Where cgroup v2 is mounted (/sys/fs/cgroup on unified hosts, .../unified on hybrid ones). */
export { cgroup2Root } from '../../control/bpf/netns-cookie.ts';
