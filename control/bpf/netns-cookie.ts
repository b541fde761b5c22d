// A network namespace's cookie, which the socket hooks compare to stay in the host namespace.
// SO_NETNS_COOKIE (Linux 5.14) asks the kernel directly; older kernels (5.10) only show it to BPF
// programs (bpf_get_netns_cookie, 5.7), so there bpf/netns-cookie.c learns it: attached to a
// throwaway cgroup, it records the cookie of a socket a short-lived child creates in the
// namespace. The cgroup, the attachment and the child are gone before this returns.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { u32, u64 } from './codec.ts';
import { BpfError, call } from './errors.ts';
import { native } from './native.ts';
import { LoadedObject } from './object.ts';

const LEARNER = fileURLToPath(new URL('../../build/bpf/netns-cookie.o', import.meta.url));
// The child joins the cgroup (argv[1]) first, then creates one socket.
const CHILD = "require('node:fs').writeFileSync(process.argv[1] + '/cgroup.procs', String(process.pid)); require('node:net').createServer().listen(0, '127.0.0.1', function () { this.close(); });";

/** Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified in hybrid set-ups). */
export function cgroup2Root(): string {
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [, mountPoint, type] = line.split(' ');
    if (type === 'cgroup2' && mountPoint !== undefined) return mountPoint;
  }
  throw new Error('no cgroup2 filesystem is mounted');
}

/** The cookie of a network namespace (this process's, or the one at netnsPath). */
export function netnsCookie(netnsPath?: string): bigint {
  try {
    return call(() => native().netnsCookie(netnsPath));
  } catch (e) {
    if (!(e instanceof BpfError) || e.code !== 'ENOPROTOOPT') throw e;
    return learnNetnsCookie(netnsPath);
  }
}

/** The cookie as a BPF program sees it, for kernels without SO_NETNS_COOKIE. */
export function learnNetnsCookie(netnsPath?: string): bigint {
  const cgroup = `${cgroup2Root()}/switchyard-netns-cookie-${process.pid}`;
  const object = LoadedObject.load(LEARNER);
  mkdirSync(cgroup, { recursive: true });
  const fd = object.programFd('sy_netns_cookie_learn');
  try {
    call(() => native().cgroupAttach({ path: cgroup, attachType: 'sock_create', progFd: fd }));
    try {
      const argv = [process.execPath, '-e', CHILD, cgroup];
      const [file, ...args] = netnsPath === undefined ? argv : ['nsenter', `--net=${netnsPath}`, '--', ...argv];
      const r = spawnSync(file!, args, { timeout: 60_000, stdio: ['ignore', 'ignore', 'pipe'] });
      if (r.status !== 0) throw new Error(`learning the netns cookie: the child failed (${r.error?.message ?? r.stderr.toString().trim()})`);
    } finally {
      call(() => native().cgroupDetach({ path: cgroup, attachType: 'sock_create', progFd: fd }));
    }
    const cookie = object.map('sy_netns_cookie_seen', u32, u64).get(0) ?? 0n;
    if (cookie === 0n) throw new Error('learning the netns cookie: the program saw no socket');
    return cookie;
  } finally {
    object.close();
    rmdirSync(cgroup);
  }
}
