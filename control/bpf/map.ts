// A typed view of one BPF map: keys and values go through codecs, calls through the addon.
import { decode, encode, type Codec } from './codec.ts';
import { BpfError, call } from './errors.ts';
import { native, type NativeMapInfo } from './native.ts';

/** BPF_ANY, BPF_NOEXIST, BPF_EXIST. */
export type UpdateMode = 'any' | 'noexist' | 'exist';
const UPDATE_FLAGS: Record<UpdateMode, number> = { any: 0, noexist: 1, exist: 2 };

/** Map types from the kernel's enum bpf_map_type that the control plane cares about. */
export const MAP_TYPE = {
  HASH: 1,
  ARRAY: 2,
  PROG_ARRAY: 3,
  PERCPU_HASH: 5,
  PERCPU_ARRAY: 6,
  LRU_HASH: 9,
  LRU_PERCPU_HASH: 10,
  LPM_TRIE: 11,
  ARRAY_OF_MAPS: 12,
  HASH_OF_MAPS: 13,
} as const;

const PER_CPU_TYPES = new Set<number>([MAP_TYPE.PERCPU_HASH, MAP_TYPE.PERCPU_ARRAY, MAP_TYPE.LRU_PERCPU_HASH]);

export function isPerCpu(type: number): boolean {
  return PER_CPU_TYPES.has(type);
}

/** How many entries one batch call moves. */
const BATCH = 256;

export class BpfMap<K, V> {
  readonly fd: number;
  readonly info: NativeMapInfo;
  readonly key: Codec<K>;
  readonly value: Codec<V>;
  private readonly ownsFd: boolean;
  private batchSupported: boolean | undefined;

  /**
   * Wraps `fd`. The codecs must produce exactly the map's key and value sizes (for per-CPU
   * maps, use codec.perCpu); a mismatch is a programming error and throws here.
   */
  constructor(fd: number, key: Codec<K>, value: Codec<V>, options: { ownsFd?: boolean } = {}) {
    this.fd = fd;
    this.info = call(() => native().mapInfo(fd));
    this.key = key;
    this.value = value;
    this.ownsFd = options.ownsFd ?? false;
    const valueSize = isPerCpu(this.info.type) ? Math.ceil(this.info.valueSize / 8) * 8 * native().numPossibleCpus() : this.info.valueSize;
    if (key.size !== this.info.keySize || value.size !== valueSize) {
      throw new TypeError(
        `map ${this.info.name}: codecs are ${key.size}/${value.size} bytes, the map holds ${this.info.keySize}/${valueSize}`,
      );
    }
  }

  /** Opens a pinned map; the returned map owns (and closes) its fd. */
  static fromPin<K, V>(path: string, key: Codec<K>, value: Codec<V>): BpfMap<K, V> {
    const fd = call(() => native().objGet(path));
    try {
      return new BpfMap(fd, key, value, { ownsFd: true });
    } catch (e) {
      native().closeFd(fd);
      throw e;
    }
  }

  get name(): string {
    return this.info.name;
  }

  /** What the kernel says of a pinned map (type, sizes), without a typed view of it. */
  static pinnedInfo(path: string): NativeMapInfo {
    const fd = call(() => native().objGet(path));
    try {
      return call(() => native().mapInfo(fd));
    } finally {
      native().closeFd(fd);
    }
  }

  get(key: K): V | undefined {
    const raw = call(() => native().mapLookup(this.fd, encode(this.key, key), this.value.size));
    return raw === null ? undefined : decode(this.value, raw);
  }

  set(key: K, value: V, mode: UpdateMode = 'any'): void {
    call(() => native().mapUpdate(this.fd, encode(this.key, key), encode(this.value, value), UPDATE_FLAGS[mode]));
  }

  /** Returns false when there was no such entry. */
  delete(key: K): boolean {
    return call(() => native().mapDelete(this.fd, encode(this.key, key)));
  }

  /** Walks the keys one syscall at a time (works on every map type and kernel). */
  *keys(): Generator<K> {
    let current: Buffer | null = null;
    for (;;) {
      const prev: Buffer | null = current;
      const next: Buffer | null = call(() => native().mapNextKey(this.fd, prev, this.key.size));
      if (next === null) return;
      yield decode(this.key, next);
      current = next;
    }
  }

  /**
   * Every entry, read in batches where the kernel supports batch lookups for this map type
   * (5.6+ for hash and array maps), otherwise key by key.
   */
  entries(): Array<[K, V]> {
    if (this.batchSupported !== false) {
      try {
        const out = this.lookupBatch();
        this.batchSupported = true;
        return out;
      } catch (e) {
        if (!(e instanceof BpfError) || !batchUnsupported(e) || this.batchSupported) throw e;
        this.batchSupported = false;
      }
    }
    const out: Array<[K, V]> = [];
    for (const k of this.keys()) {
      const v = this.get(k);
      if (v !== undefined) out.push([k, v]);
    }
    return out;
  }

  /**
   * Every entry, a page at a time and synchronously, with entries()'s fallback to a key walk:
   * for walks of large maps whose caller gives the event loop a turn between pages.
   */
  *entryPages(size = BATCH): Generator<Array<[K, V]>> {
    if (this.batchSupported !== false) {
      let cursor: Buffer | null = null;
      for (let first = true; ; first = false) {
        const prev: Buffer | null = cursor;
        let page: { keys: Buffer; values: Buffer; count: number; cursor: Buffer | null };
        try {
          page = call(() => native().mapLookupBatch(this.fd, prev, this.key.size, this.value.size, size));
        } catch (e) {
          if (!first || !(e instanceof BpfError) || !batchUnsupported(e) || this.batchSupported === true) throw e;
          this.batchSupported = false;
          break;
        }
        this.batchSupported = true;
        const out: Array<[K, V]> = [];
        for (let i = 0; i < page.count; i++) out.push([this.key.decodeFrom(page.keys, i * this.key.size), this.value.decodeFrom(page.values, i * this.value.size)]);
        if (out.length > 0) yield out;
        if (page.cursor === null) return;
        cursor = page.cursor;
      }
    }
    let out: Array<[K, V]> = [];
    for (const k of this.keys()) {
      const v = this.get(k);
      if (v !== undefined) out.push([k, v]);
      if (out.length >= size) {
        yield out;
        out = [];
      }
    }
    if (out.length > 0) yield out;
  }

  /**
   * The entries a page at a time (batch lookups), for walks of large maps that must let the event
   * loop run between pages. Entries written or deleted meanwhile may or may not be seen.
   */
  async *pages(size = 4096): AsyncGenerator<Array<[K, V]>> {
    let cursor: Buffer | null = null;
    for (;;) {
      const prev: Buffer | null = cursor;
      const page: { keys: Buffer; values: Buffer; count: number; cursor: Buffer | null } = call(() => native().mapLookupBatch(this.fd, prev, this.key.size, this.value.size, size));
      const out: Array<[K, V]> = [];
      for (let i = 0; i < page.count; i++) out.push([this.key.decodeFrom(page.keys, i * this.key.size), this.value.decodeFrom(page.values, i * this.value.size)]);
      if (out.length > 0) yield out;
      if (page.cursor === null) return;
      cursor = page.cursor;
    }
  }

  private lookupBatch(): Array<[K, V]> {
    const out: Array<[K, V]> = [];
    let cursor: Buffer | null = null;
    for (;;) {
      const prev: Buffer | null = cursor;
      const page: { keys: Buffer; values: Buffer; count: number; cursor: Buffer | null } = call(() => native().mapLookupBatch(this.fd, prev, this.key.size, this.value.size, BATCH));
      for (let i = 0; i < page.count; i++) {
        out.push([
          this.key.decodeFrom(page.keys, i * this.key.size),
          this.value.decodeFrom(page.values, i * this.value.size),
        ]);
      }
      if (page.cursor === null) return out;
      cursor = page.cursor;
    }
  }

  /** Writes many entries with BPF_MAP_UPDATE_BATCH; returns how many were written. */
  setMany(entries: ReadonlyArray<readonly [K, V]>, mode: UpdateMode = 'any'): number {
    let written = 0;
    for (let start = 0; start < entries.length; start += BATCH) {
      const chunk = entries.slice(start, start + BATCH);
      const keys = Buffer.alloc(chunk.length * this.key.size);
      const values = Buffer.alloc(chunk.length * this.value.size);
      chunk.forEach(([k, v], i) => {
        this.key.encodeInto(k, keys, i * this.key.size);
        this.value.encodeInto(v, values, i * this.value.size);
      });
      written += call(() => native().mapUpdateBatch(this.fd, keys, values, chunk.length, UPDATE_FLAGS[mode]));
    }
    return written;
  }

  /** Deletes many keys with BPF_MAP_DELETE_BATCH; every key must exist. */
  deleteMany(keys: readonly K[]): number {
    let deleted = 0;
    for (let start = 0; start < keys.length; start += BATCH) {
      const chunk = keys.slice(start, start + BATCH);
      const buf = Buffer.alloc(chunk.length * this.key.size);
      chunk.forEach((k, i) => this.key.encodeInto(k, buf, i * this.key.size));
      deleted += call(() => native().mapDeleteBatch(this.fd, buf, chunk.length));
    }
    return deleted;
  }

  /** Pins the map at `path` (which must be on bpffs). */
  pin(path: string): void {
    call(() => native().objPin(this.fd, path));
  }

  close(): void {
    if (this.ownsFd) native().closeFd(this.fd);
  }
}

/** The kernel has no batch operations for this map type (e.g. LPM tries). */
function batchUnsupported(e: BpfError): boolean {
  // 524 is the kernel's own ENOTSUPP, which has no name in user space: Linux 5.10 answers a
  // batch lookup on an LPM trie with it.
  return ['EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'ENOTSUPP'].includes(e.code) || e.errno === 524;
}

/** How many entries a map holds, without decoding them (batch reads, key walk as fallback). */
export function countEntries(fd: number): number {
  const info = call(() => native().mapInfo(fd));
  const valueSize = isPerCpu(info.type) ? Math.ceil(info.valueSize / 8) * 8 * native().numPossibleCpus() : info.valueSize;
  let total = 0;
  try {
    let cursor: Buffer | null = null;
    for (;;) {
      const prev: Buffer | null = cursor;
      const page: { count: number; cursor: Buffer | null } = call(() => native().mapLookupBatch(fd, prev, info.keySize, valueSize, 4096));
      total += page.count;
      if (page.cursor === null) return total;
      cursor = page.cursor;
    }
  } catch (e) {
    if (!(e instanceof BpfError)) throw e;
    total = 0;
    let key: Buffer | null = null;
    for (;;) {
      const prev: Buffer | null = key;
      const next: Buffer | null = call(() => native().mapNextKey(fd, prev, info.keySize));
      if (next === null) return total;
      total++;
      key = next;
    }
  }
}
