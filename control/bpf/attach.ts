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

/** A device already runs someone else's XDP program: we leave it and say whose it is. */
export class ForeignXdpProgramError extends Error {
  readonly progId: number;
  readonly progName: string;
  constructor(device: string, progId: number, progName: string, mode: string) {
    super(`${device} already runs XDP program ${progId} "${progName}" (${mode}), which is not ours: it is left in place and the device gets no XDP from us (tc still serves it)`);
    this.name = 'ForeignXdpProgramError';
    this.progId = progId;
    this.progName = progName;
  }
}

/** The name of a loaded program, by id ("" if it went away meanwhile). */
function programName(id: number): string {
  let fd: number;
  try {
    fd = call(() => native().progFdById(id));
  } catch {
    return '';
  }
  try {
    return progInfo(fd).name;
  } finally {
    native().closeFd(fd);
  }
}

function deviceName(spec: InterfaceTarget): string {
  return spec.ifname ?? `ifindex ${spec.ifindex}`;
}

/**
 * Attaches an XDP program without ever replacing another agent's: a device with no XDP program
 * gets ours; one running a program of the same name (our previous instance) has it replaced
 * atomically, in the kernel's compare-and-swap; any other program stays and
 * ForeignXdpProgramError names it. "auto" means native (driver) XDP or none: generic XDP runs
 * after the skb exists, so it saves nothing over tc, and it linearises every GRO super-packet
 * (a copy of up to 64 KiB) and leaves CHECKSUM_COMPLETE stale after a rewrite. Ask for
 * "generic" by name to get it anyway.
 */
export function xdpAttach(spec: InterfaceTarget & { progFd: number; mode?: XdpMode }): { ifindex: number; mode: XdpMode } {
  const mode = spec.mode === undefined || spec.mode === 'auto' ? 'native' : spec.mode;
  const target: InterfaceTarget = { ifname: spec.ifname, ifindex: spec.ifindex, netns: spec.netns };
  const mine = progInfo(spec.progFd).name;
  for (let attempt = 0; ; attempt++) {
    const current = xdpQuery(target);
    let expectedProgId = 0;
    if (current.progId !== 0) {
      const name = programName(current.progId);
      if (name !== mine) throw new ForeignXdpProgramError(deviceName(spec), current.progId, name, current.mode);
      expectedProgId = current.progId;
      // Ours in another mode: the kernel swaps only within one mode, so ours goes first (tc
      // carries the device meanwhile, as it carries everything XDP passes).
      if (current.mode !== mode) {
        xdpDetach(target);
        expectedProgId = 0;
      }
    }
    try {
      return call(() => native().xdpAttach({ ...target, progFd: spec.progFd, mode, expectedProgId }));
    } catch (e) {
      // Another program came or went between the query and the attach (EBUSY, EEXIST): ask again.
      const code = (e as { code?: string }).code;
      if (attempt < 2 && (code === 'EBUSY' || code === 'EEXIST')) continue;
      throw e;
    }
  }
}

/**
 * Detaches the device's XDP program if it is ours (the name of progFd's program: an earlier
 * agent's instance), for a device that is to go without XDP; another agent's stays. True if one
 * was detached.
 */
export function xdpDetachOurs(spec: InterfaceTarget & { progFd: number }): boolean {
  const target: InterfaceTarget = { ifname: spec.ifname, ifindex: spec.ifindex, netns: spec.netns };
  const current = xdpQuery(target);
  if (current.progId === 0 || programName(current.progId) !== progInfo(spec.progFd).name) return false;
  return xdpDetach(target);
}

export function xdpDetach(spec: InterfaceTarget): boolean {
  return call(() => native().xdpDetach(spec));
}

export function xdpQuery(spec: InterfaceTarget): { progId: number; mode: string } {
  return call(() => native().xdpQuery(spec));
}

/** Runs a program once (or `repeat` times) on a packet with BPF_PROG_TEST_RUN; in `netns` (a path), its FIB lookups see that namespace's routes. */
export function progTestRun(
  progFd: number,
  packet: Buffer,
  options: { repeat?: number; ctxIn?: Buffer; dataOutSize?: number; netns?: string } = {},
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

export { netnsCookie } from './netns-cookie.ts';

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
