// Socket-level load balancing outside the hooks themselves (bpf/include/sock.h): the sizes of its
// maps, the retired single rev-NAT table, and the destruction of the node's sockets that are
// connected to a backend that left its service (bpf/sock-destroy.c), run after a sync that
// removed backends.
import { existsSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { u32 } from '../../bpf/codec.ts';
import { iterRun } from '../../bpf/iter.ts';
import { kernelFunctionExists } from '../../bpf/kernel.ts';
import { sockKey, sockRevNatValue, type SockKey, type SockRevNatValue } from '../../bpf/layout.ts';
import { BpfMap } from '../../bpf/map.ts';
import { LoadedObject, type LoadOptions } from '../../bpf/object.ts';

const DESTROY_OBJECT = fileURLToPath(new URL('../../../build/bpf/sock-destroy.o', import.meta.url));

/** The kfunc the socket iterators call (Linux 6.5); its presence in the kernel's BTF decides. */
export const SOCK_DESTROY_KFUNC = 'bpf_sock_destroy';

/**
 * Sizes of the socket maps, from the conntrack table's (conntrack.maxPerCore x CPUs, at least
 * conntrack.min): every translated socket is one flow, and a flow rarely outlives its socket.
 * Half of it per table, at least 65536 (the single table's size before it was split).
 */
export function socketMapSizes(ctEntries: number): Record<'sy_sock_revnat_tcp' | 'sy_sock_revnat_udp' | 'sy_sock_backend', number> {
  const n = Math.max(65536, ctEntries >> 1);
  return { sy_sock_revnat_tcp: n, sy_sock_revnat_udp: n, sy_sock_backend: n };
}

/**
 * Layout 2's single sy_sock_revnat table (no protocol, rev-NAT id only), replaced by one table per
 * protocol. Once our hooks are the ones attached (nothing writes the old table any more), its
 * entries are copied into both new tables (the socket's protocol picks the one it reads) without a
 * backend id, so those sockets keep their service address but are never destroyed, and its pin
 * goes. Returns the entries moved.
 */
export function retireSockRevNat(object: LoadedObject, pinDir: string): number {
  const path = `${pinDir}/sy_sock_revnat`;
  if (!existsSync(path)) return 0;
  const old = BpfMap.fromPin(path, sockKey, u32);
  let moved = 0;
  try {
    const entries = old.entries().map(([k, revNatId]) => [k, { revNatId, backendId: 0, serviceId: 0 }] as [SockKey, SockRevNatValue]);
    for (const name of ['sy_sock_revnat_tcp', 'sy_sock_revnat_udp']) {
      if (entries.length > 0) object.map(name, sockKey, sockRevNatValue).setMany(entries);
    }
    moved = entries.length;
  } finally {
    old.close();
  }
  rmSync(path);
  return moved;
}

/** A socket the iterators destroyed, by the backend it was connected to. */
export interface DestroyedSocket {
  proto: 'tcp' | 'udp';
  cookie: bigint;
  backend: string;
  port: number;
}

export interface SocketTerminatorOptions {
  /** The loaded datapath, whose pinned maps the iterators read. */
  datapath: { object: LoadedObject };
  pinDir: string;
  /** The network namespace whose sockets are walked (the socket hooks' one); default: this process's. */
  netnsPath?: string;
  log: (fields: Record<string, unknown>, message: string) => void;
  /** The iterators' object; default build/bpf/sock-destroy.o. */
  object?: string;
}

/**
 * Destroys the sockets of processes on the node that the socket hooks connected to a backend no
 * longer in sy_backends (bpf/sock-destroy.c says which). On a kernel without bpf_sock_destroy
 * open() says so once and returns undefined: those sockets then wait for their own timeouts,
 * as with kube-proxy (whose conntrack entries keep a removed endpoint's TCP flows).
 */
export class SocketTerminator {
  private readonly object: LoadedObject;
  private readonly netnsPath: string | undefined;

  private constructor(object: LoadedObject, netnsPath: string | undefined) {
    this.object = object;
    this.netnsPath = netnsPath;
  }

  static open(o: SocketTerminatorOptions): SocketTerminator | undefined {
    const load = SocketTerminator.loadOptions(o);
    if (load === undefined) return undefined;
    try {
      return new SocketTerminator(LoadedObject.load(load.path, load.options), o.netnsPath);
    } catch (e) {
      SocketTerminator.notLoaded(o, e);
      return undefined;
    }
  }

  /** The same, verifying on a worker thread (the agent's start). */
  static async openAsync(o: SocketTerminatorOptions): Promise<SocketTerminator | undefined> {
    const load = SocketTerminator.loadOptions(o);
    if (load === undefined) return undefined;
    try {
      return new SocketTerminator(await LoadedObject.loadAsync(load.path, load.options), o.netnsPath);
    } catch (e) {
      SocketTerminator.notLoaded(o, e);
      return undefined;
    }
  }

  /** What to load, or undefined (said why) where the kernel cannot destroy sockets. */
  private static loadOptions(o: SocketTerminatorOptions): { path: string; options: LoadOptions } | undefined {
    let present: boolean;
    try {
      present = kernelFunctionExists(SOCK_DESTROY_KFUNC);
    } catch {
      present = false; // no kernel BTF to ask: no kfuncs either
    }
    if (!present) {
      o.log({ kfunc: SOCK_DESTROY_KFUNC }, `the kernel has no ${SOCK_DESTROY_KFUNC} (Linux 6.5): a process on the node connected through a Service to a backend that is then removed keeps its socket until its own timeouts end it`);
      return undefined;
    }
    const shared = new Set(o.datapath.object.mapNames());
    return {
      path: o.object ?? DESTROY_OBJECT,
      options: { pinDir: o.pinDir, sizeOf: (name) => (shared.has(name) ? o.datapath.object.mapDescription(name).maxEntries : undefined) },
    };
  }

  private static notLoaded(o: SocketTerminatorOptions, e: unknown): void {
    o.log({ error: (e as Error).message }, `the socket iterators did not load: sockets connected to removed backends are not reset (${(e as Error).message.split('\n')[0]})`);
  }

  /** Walks the namespace's TCP and UDP sockets once; returns those destroyed. */
  run(): DestroyedSocket[] {
    const out: DestroyedSocket[] = [];
    for (const proto of ['tcp', 'udp'] as const) {
      const written = iterRun(this.object.programFd(`sy_sock_destroy_${proto}`), this.netnsPath);
      for (let off = 0; off + sockKey.size <= written.length; off += sockKey.size) {
        const k = sockKey.decodeFrom(written, off);
        out.push({ proto, cookie: k.cookie, backend: k.addr, port: k.port });
      }
    }
    return out;
  }

  close(): void {
    this.object.close();
  }
}
