// Loading a BPF object: open, size, load (reusing or creating pins), find maps and programs.
import { rmdirSync } from 'node:fs';
import { ensurePinDir } from './bpffs.ts';
import type { Codec } from './codec.ts';
import { BpfError, call, callAsync } from './errors.ts';
import { BpfMap } from './map.ts';
import { native, type NativeBpfObject, type NativeMapDescription, type NativeProgramDescription } from './native.ts';

export interface LoadOptions {
  /**
   * A directory on bpffs. Every map is pinned there by name; a compatible map already
   * pinned there is reused, which is how a restarted agent adopts the live datapath.
   */
  pinDir?: string;
  /** Map sizes chosen by configuration, by map name. */
  maxEntries?: Readonly<Record<string, number>>;
  /**
   * Sizes for whichever of the object's maps this names (undefined: its own): an object sharing
   * pinned maps with another gives them the sizes they were pinned with.
   */
  sizeOf?: (name: string) => number | undefined;
}

/** Loads tried when the verifier keeps being interrupted (each is libbpf's own few retries). */
const LOAD_ATTEMPTS = 8;

export class LoadedObject {
  readonly path: string;
  readonly pinDir: string | undefined;
  private handle: NativeBpfObject | undefined;
  private readonly mapsByName: Map<string, NativeMapDescription>;
  private readonly programsByName: Map<string, NativeProgramDescription>;

  private constructor(path: string, pinDir: string | undefined, handle: NativeBpfObject) {
    this.path = path;
    this.pinDir = pinDir;
    this.handle = handle;
    this.mapsByName = new Map(handle.maps().map((m) => [m.name, m]));
    this.programsByName = new Map(handle.programs().map((p) => [p.name, p]));
  }

  /**
   * Opens and loads `path`. Errors: ObjectFileError, VerifierError, BpffsMissingError, BpfError.
   * The verifier gives up with EAGAIN when a signal is pending (a child's SIGCHLD, a profiler's
   * SIGPROF) and libbpf retries only a few times at once; a long verification on a loaded node can
   * lose them all. An object whose load failed cannot be loaded again, so a fresh one is opened.
   */
  static load(path: string, options: LoadOptions = {}): LoadedObject {
    for (let attempt = 1; ; attempt++) {
      const handle = LoadedObject.open(path, options);
      try {
        call(() => handle.load(options.pinDir));
        return new LoadedObject(path, options.pinDir, handle);
      } catch (e) {
        handle.close();
        if (!LoadedObject.retry(e, attempt)) throw e;
      }
    }
  }

  /**
   * The same load with verification on a worker thread, so the event loop keeps running (the
   * agent lists its sources meanwhile). Signals are blocked on that thread: no EAGAIN from them.
   */
  static async loadAsync(path: string, options: LoadOptions = {}): Promise<LoadedObject> {
    for (let attempt = 1; ; attempt++) {
      const handle = LoadedObject.open(path, options);
      try {
        await callAsync(() => handle.loadAsync(options.pinDir));
        return new LoadedObject(path, options.pinDir, handle);
      } catch (e) {
        handle.close();
        if (!LoadedObject.retry(e, attempt)) throw e;
      }
    }
  }

  private static retry(e: unknown, attempt: number): boolean {
    return e instanceof BpfError && e.code === 'EAGAIN' && attempt < LOAD_ATTEMPTS;
  }

  /** Opens `path` and sizes its maps; nothing reaches the kernel yet. */
  private static open(path: string, options: LoadOptions): NativeBpfObject {
    if (options.pinDir !== undefined) ensurePinDir(options.pinDir);
    const handle = call(() => new (native().BpfObject)(path));
    try {
      for (const m of options.sizeOf === undefined ? [] : handle.maps()) {
        const size = m.internal ? undefined : options.sizeOf!(m.name);
        if (size !== undefined) call(() => handle.setMapMaxEntries(m.name, size));
      }
      for (const [name, size] of Object.entries(options.maxEntries ?? {})) {
        call(() => handle.setMapMaxEntries(name, size));
      }
      return handle;
    } catch (e) {
      handle.close();
      throw e;
    }
  }

  private get live(): NativeBpfObject {
    if (this.handle === undefined) throw new Error(`${this.path}: object is closed`);
    return this.handle;
  }

  mapNames(): string[] {
    return [...this.mapsByName.values()].filter((m) => !m.internal).map((m) => m.name);
  }

  mapDescription(name: string): NativeMapDescription {
    const m = this.mapsByName.get(name);
    if (m === undefined) throw new Error(`${this.path}: no map named ${name}`);
    return m;
  }

  /** A typed view of one of the object's maps; the object keeps owning the fd. */
  map<K, V>(name: string, key: Codec<K>, value: Codec<V>): BpfMap<K, V> {
    this.live;
    return new BpfMap(this.mapDescription(name).fd, key, value);
  }

  programFd(name: string): number {
    this.live;
    const p = this.programsByName.get(name);
    if (p === undefined) throw new Error(`${this.path}: no program named ${name}`);
    return p.fd;
  }

  programNames(): string[] {
    return [...this.programsByName.keys()];
  }

  /** Pins program `name` at `path` on bpffs. */
  pinProgram(name: string, path: string): void {
    call(() => this.live.pinProgram(name, path));
  }

  /** Removes the map pins this object made or reused, and the pin directory if now empty. */
  unpinMaps(): void {
    call(() => this.live.unpinMaps());
    if (this.pinDir !== undefined) {
      try {
        rmdirSync(this.pinDir);
      } catch {
        // Not empty (programs or other objects pinned there) or already gone: leave it.
      }
    }
  }

  /** Releases fds. Pins and attachments stay in the kernel. */
  close(): void {
    this.handle?.close();
    this.handle = undefined;
  }
}
