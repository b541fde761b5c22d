// The addon's raw surface, typed. Only control/bpf/ imports this file: everything else
// uses the wrappers, which turn native errors into the typed errors of errors.ts.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface NativeMapDescription {
  name: string;
  fd: number;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  internal: boolean;
  pinPath: string | null;
  pinned: boolean;
}

export interface NativeProgramDescription {
  name: string;
  section: string;
  fd: number;
  type: number;
}

export interface NativeBpfObject {
  load(pinDir?: string): void;
  /** The same load on a worker thread (signals blocked there); the object is busy until it settles. */
  loadAsync(pinDir?: string): Promise<void>;
  maps(): NativeMapDescription[];
  programs(): NativeProgramDescription[];
  setMapMaxEntries(name: string, maxEntries: number): void;
  pinProgram(name: string, path: string): void;
  unpinMaps(): void;
  close(): void;
}

export interface NativeMapInfo {
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  name: string;
}

export interface InterfaceTarget {
  ifname?: string;
  ifindex?: number;
  /** Path of a network namespace, e.g. /run/netns/NAME; the call runs inside it. */
  netns?: string;
}

export type TcDirection = 'ingress' | 'egress';
export type XdpMode = 'native' | 'generic' | 'offload' | 'auto';

export interface TcFilterSpec extends InterfaceTarget {
  direction: TcDirection;
  handle?: number;
  priority?: number;
}

export interface NativeAddon {
  BpfObject: new (path: string) => NativeBpfObject;
  mapInfo(fd: number): NativeMapInfo;
  mapLookup(fd: number, key: Buffer, valueLen: number): Buffer | null;
  mapUpdate(fd: number, key: Buffer, value: Buffer, flags: number): void;
  mapDelete(fd: number, key: Buffer): boolean;
  mapNextKey(fd: number, key: Buffer | null, keyLen: number): Buffer | null;
  mapLookupBatch(
    fd: number,
    cursor: Buffer | null,
    keyLen: number,
    valueLen: number,
    maxCount: number,
  ): { keys: Buffer; values: Buffer; count: number; cursor: Buffer | null };
  mapUpdateBatch(fd: number, keys: Buffer, values: Buffer, count: number, flags: number): number;
  mapDeleteBatch(fd: number, keys: Buffer, count: number): number;
  objGet(path: string): number;
  mapCreate(type: number, keySize: number, valueSize: number, maxEntries: number, name: string): number;
  objPin(fd: number, path: string): void;
  closeFd(fd: number): void;
  numPossibleCpus(): number;
  tcAttach(spec: TcFilterSpec & { progFd: number; replace?: boolean }): {
    ifindex: number;
    handle: number;
    priority: number;
    progId: number;
  };
  tcDetach(spec: TcFilterSpec): boolean;
  tcQuery(spec: TcFilterSpec): number | null;
  /** Never replaces by surprise: expectedProgId 0 attaches only to a device without XDP, n only over program n. */
  xdpAttach(spec: InterfaceTarget & { progFd: number; mode?: Exclude<XdpMode, 'auto'>; expectedProgId?: number }): { ifindex: number; mode: XdpMode };
  xdpDetach(spec: InterfaceTarget): boolean;
  xdpQuery(spec: InterfaceTarget): { progId: number; mode: string };
  progTestRun(
    fd: number,
    data: Buffer,
    options?: { repeat?: number; ctxIn?: Buffer; ctxOutSize?: number; dataOutSize?: number; netns?: string },
  ): { retval: number; data: Buffer; ctx: Buffer | null; durationNs: number };
  progInfo(fd: number): { id: number; type: number; name: string; tag: string };
  progFdById(id: number): number;
  kernelFunctionExists(name: string): boolean;
  helperSupported(name: ProbedHelper): boolean;
  cgroupAttach(spec: { path: string; attachType: CgroupAttachType; progFd: number }): void;
  cgroupDetach(spec: { path: string; attachType: CgroupAttachType; progFd: number }): boolean;
  cgroupQuery(spec: { path: string; attachType: CgroupAttachType }): number[];
  netnsCookie(netnsPath?: string): bigint;
  /** Runs an iterator program to its end (created in netnsPath's namespace when given); what it wrote. */
  iterRun(progFd: number, netnsPath?: string): Buffer;
}

/** Helpers native/prog.cc can probe for (loading a tiny program that calls one). */
export type ProbedHelper = 'set_retval' | 'ktime_get_coarse_ns';

export type CgroupAttachType = 'connect4' | 'connect6' | 'sendmsg4' | 'sendmsg6' | 'recvmsg4' | 'recvmsg6' | 'getpeername4' | 'getpeername6' | 'sock_create';

/** The repository root, from which build outputs are found. */
export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

const addonPath = fileURLToPath(new URL('../../build/Release/switchyard.node', import.meta.url));

let cached: NativeAddon | undefined;

/** Loads the addon on first use, so that pure modules importing types never need it. */
export function native(): NativeAddon {
  if (cached === undefined) {
    if (!existsSync(addonPath)) {
      throw new Error(`the native addon is not built (${addonPath}): run "npm run build:native"`);
    }
    const require = createRequire(import.meta.url);
    cached = require(addonPath) as NativeAddon;
  }
  return cached;
}
