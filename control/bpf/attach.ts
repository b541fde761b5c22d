// Attaching programs to interfaces: tc clsact filters and XDP.
import { call } from './errors.ts';
import { native, type CgroupAttachType, type InterfaceTarget, type TcFilterSpec, type XdpMode } from './native.ts';

export type { CgroupAttachType, InterfaceTarget, TcDirection, TcFilterSpec, XdpMode } from './native.ts';

/** Default tc handle/priority for Switchyard's filters; distinct from tc's usual 1/1 so ours are easy to tell apart. */
export const TC_HANDLE = 0x5359; // "SY"
export const TC_PRIORITY = 1;

function withDefaults<T extends TcFilterSpec>(spec: T): T {
  return { handle: TC_HANDLE, priority: TC_PRIORITY, ...spec };
}

/** Attaches (or replaces) a tc filter running `progFd`; creates the clsact qdisc if needed. */
export function tcAttach(spec: TcFilterSpec & { progFd: number }): { ifindex: number; progId: number } {
  const result = call(() => native().tcAttach({ ...withDefaults(spec), replace: true }));
  return { ifindex: result.ifindex, progId: result.progId };
}

/** Removes our filter; false when there was none. The clsact qdisc stays for others. */
export function tcDetach(spec: TcFilterSpec): boolean {
  return call(() => native().tcDetach(withDefaults(spec)));
}

/** The id of the program in our filter slot, or null. */
export function tcQuery(spec: TcFilterSpec): number | null {
  return call(() => native().tcQuery(withDefaults(spec)));
}

/** Attaches an XDP program; "auto" tries native mode and falls back to generic. */
export function xdpAttach(spec: InterfaceTarget & { progFd: number; mode?: XdpMode }): { ifindex: number; mode: XdpMode } {
  return call(() => native().xdpAttach(spec));
}

export function xdpDetach(spec: InterfaceTarget): boolean {
  return call(() => native().xdpDetach(spec));
}

export function xdpQuery(spec: InterfaceTarget): { progId: number; mode: string } {
  return call(() => native().xdpQuery(spec));
}

/** Runs a program once (or `repeat` times) on a packet with BPF_PROG_TEST_RUN. */
export function progTestRun(
  progFd: number,
  packet: Buffer,
  options: { repeat?: number; ctxIn?: Buffer; dataOutSize?: number } = {},
): { retval: number; data: Buffer; durationNs: number } {
  const r = call(() => native().progTestRun(progFd, packet, options));
  return { retval: r.retval, data: r.data, durationNs: r.durationNs };
}

export function progInfo(progFd: number): { id: number; type: number; name: string; tag: string } {
  return call(() => native().progInfo(progFd));
}

/** Attaches a socket-level program to a cgroup (v2), alongside any others already there. */
export function cgroupAttach(path: string, attachType: CgroupAttachType, progFd: number): void {
  call(() => native().cgroupAttach({ path, attachType, progFd }));
}

export function cgroupDetach(path: string, attachType: CgroupAttachType, progFd: number): boolean {
  return call(() => native().cgroupDetach({ path, attachType, progFd }));
}

export function cgroupQuery(path: string, attachType: CgroupAttachType): number[] {
  return call(() => native().cgroupQuery({ path, attachType }));
}

/** The cookie of a network namespace (this process's, or the one at netnsPath). */
export function netnsCookie(netnsPath?: string): bigint {
  return call(() => native().netnsCookie(netnsPath));
}

/**
 * Attaches `progFd` to a cgroup and detaches earlier programs of the same name there (a previous
 * agent's instance): the new one is in place before the old one leaves.
 */
export function cgroupReplace(path: string, attachType: CgroupAttachType, progFd: number): void {
  const mine = progInfo(progFd);
  cgroupAttach(path, attachType, progFd);
  for (const id of cgroupQuery(path, attachType)) {
    if (id === mine.id) continue;
    const fd = call(() => native().progFdById(id));
    try {
      if (progInfo(fd).name === mine.name) cgroupDetach(path, attachType, fd);
    } finally {
      native().closeFd(fd);
    }
  }
}
