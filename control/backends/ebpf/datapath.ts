// The eBPF backend's adapter: loads the datapath object with its maps pinned (adopting maps a
// previous agent left, never flushing them), and applies compiled state make-before-break:
// backends first, then a new backend set, then the frontend flipped to it in one atomic
// update, then the old set deleted; removals in the reverse order.
import { existsSync, rmSync } from 'node:fs';
import { BpfError, call, MapFullError } from '../../bpf/errors.ts';
import { bytes, perCpu, u32, u64 } from '../../bpf/codec.ts';
import { DEFAULT_TIMEOUTS, sweep, type ConntrackTimeouts, type PartnerLookup } from './conntrack.ts';
import { native } from '../../bpf/native.ts';
import { LoadedObject } from '../../bpf/object.ts';
import { BpfMap, countEntries, MAP_TYPE } from '../../bpf/map.ts';
import { MAGLEV_M, maglevTable } from './maglev.ts';
import { abandonSynTable, adoptSynTable, prepareSynTable } from './syn-table.ts';
import {
  affinityKey,
  affinityValue,
  backend as backendCodec,
  counter,
  ctKey,
  ctValue,
  DROP_REASONS,
  type AffinityKey,
  type CtKey,
  type CtValue,
  datapathConfig,
  frontendKey,
  frontendValue,
  LAYOUT_VERSION,
  meta,
  revNat,
  serviceAddr,
  serviceCidrKey,
  ALGORITHM,
  FE,
  RN,
  slotKey,
  sourceRangeKey,
  type Backend,
  type Counter,
  type DatapathConfig,
  type FrontendKey,
  type FrontendValue,
  type RevNat,
  type ServiceAddr,
  type ServiceCidrKey,
  type SlotKey,
  type SourceRangeKey,
} from '../../bpf/layout.ts';
import { parseCidr } from '../../model/ip.ts';
import { backendFlags, backendKey, frontendKeyText, type BackendSpec, type CompiledDatapath, type CompiledDelta, type FrontendSpec } from './compile.ts';
import { IdAllocator } from './ids.ts';
import { abandonV1, finishV1, migrateV1, prepareV1, v1Pending } from './migrate.ts';

export interface DatapathOptions {
  object: string;
  pinDir: string;
  maxEntries?: Readonly<Record<string, number>>;
}

interface Programmed {
  key: FrontendKey;
  value: FrontendValue;
  backendIds: number[];
  sourceRanges: string[];
}

/** sy_config as callers give it: conntrack timeouts beyond kube-proxy's two are optional. */
export type DatapathSettings = Omit<DatapathConfig, 'ctTimeoutTcpSynNs' | 'ctTimeoutTcpFinNs' | 'ctTimeoutTcpClosedNs' | 'ctTimeoutUdpStreamNs'> &
  Partial<Pick<DatapathConfig, 'ctTimeoutTcpSynNs' | 'ctTimeoutTcpFinNs' | 'ctTimeoutTcpClosedNs' | 'ctTimeoutUdpStreamNs'>>;

export type DropReason = (typeof DROP_REASONS)[number];

export interface GcReport {
  entriesBefore: number;
  entriesAfter: number;
  deleted: number;
  refreshed: number;
  affinityDeleted: number;
  /** Quarantined ids that no flow names any more, now free. */
  idsReleased: number;
  /** Live entries of flows left to netfilter (taken over from another proxy). */
  hostEntries: number;
}

/** The connection tracking tables: established TCP, other protocols, TCP handshakes not yet completed. */
export const CT_TABLES = ['sy_ct', 'sy_ct_any', 'sy_ct_syn'] as const;

function revNatText(r: { addr: string; port: number; family: number }): string {
  return `${r.addr}|${r.port}|${r.family}`;
}

/** CLOCK_MONOTONIC_COARSE as the datapath reads it (bpf_ktime_get_coarse_ns); the fine clock is at most a tick ahead. */
export function monotonicCoarseNs(): bigint {
  return process.hrtime.bigint();
}

export interface SyncReport {
  frontendsWritten: number;
  frontendsRemoved: number;
  backendsWritten: number;
  backendsRemoved: number;
  /** Frontends that could not be programmed (a map was full); everything else was. */
  failed: Array<{ frontend: string; error: string; servicePort?: string }>;
  /** Service ports this datapath cannot translate at all (see CompiledDatapath.unsupported). */
  unsupported: Array<{ servicePort: string; reason: string }>;
}

function rangeKey(revNatId: number, cidr: string): SourceRangeKey {
  const c = parseCidr(cidr)!;
  const addr = cidr.slice(0, cidr.indexOf('/'));
  return { prefixlen: 32 + c.prefix, revNatId, addr };
}

/* sy_backends and sy_revnat are arrays: an id is freed by writing family 0. */
const FREE_BACKEND: Backend = { addr: '0.0.0.0', port: 0, proto: 0, family: 0, flags: 0, serviceId: 0 };
const FREE_REVNAT: RevNat = { addr: '0.0.0.0', port: 0, family: 0, flags: 0 };

/** The pinned maps were written by another layout version of the datapath. */
/** A backend entry to write: its key in the model, its id (fresh: allocated by this sync), its value. */
interface BackendWrite {
  key: string;
  id: number;
  fresh: boolean;
  value: Backend;
}

/** The changes one apply makes; iterables, so that a full sync copies nothing. */
interface Changes {
  /** Service ports that need a service id (they have frontends or backends). null: a turn may be given (a long scan). */
  livePorts(): Iterable<string | null>;
  frontendWrites: Iterable<[string, FrontendSpec | undefined]>;
  backendWrites: Iterable<[string, BackendSpec | undefined]>;
  frontendRemovals(): Iterable<string | null>;
  backendRemovals(): Iterable<string | null>;
  deadPorts(): Iterable<string | null>;
}

function deltaChanges(d: CompiledDelta): Changes {
  return {
    *livePorts() {
      for (const [sp, live] of d.ports) if (live) yield sp;
    },
    frontendWrites: d.frontends,
    backendWrites: d.backends,
    *frontendRemovals() {
      for (const [text, spec] of d.frontends) if (spec === undefined) yield text;
    },
    *backendRemovals() {
      for (const [key, b] of d.backends) if (b === undefined) yield key;
    },
    *deadPorts() {
      for (const [sp, live] of d.ports) if (!live) yield sp;
    },
  };
}

/** Backends written (or freed) per batch, and per slice of a sliced apply at most. */
const BACKEND_BATCH = 4096;
/** How long a sliced apply or compile runs before the event loop gets a turn. */
export const SLICE_MS = 5;

function drain<T>(steps: Generator<void, T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
  }
}

async function drainSliced<T>(steps: Generator<void, T>, sliceMs: number): Promise<T> {
  let t0 = performance.now();
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
    if (performance.now() - t0 > sliceMs) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      t0 = performance.now();
    }
  }
}

function sameFrontendValue(a: FrontendValue, b: FrontendValue): boolean {
  return a.setId === b.setId && a.revNatId === b.revNatId && a.serviceId === b.serviceId && a.affinityTimeout === b.affinityTimeout && a.count === b.count && a.algorithm === b.algorithm && a.flags === b.flags;
}

/** An id allocator ran out: the map whose size bounds it is full. */
function idError(map: string, what: string, e: unknown): string {
  return e instanceof RangeError ? `map full: ${map}: ${what} exhausted (${e.message}); raise its size (mapSizes)` : (e as Error).message;
}

export class LayoutMismatchError extends Error {
  constructor(pinDir: string, found: number | undefined, detail?: string) {
    super(
      `the maps pinned under ${pinDir} have ${found === undefined ? 'another layout' : `layout version ${found}`}, this agent uses version ${LAYOUT_VERSION}: ` +
        'run the matching Switchyard version, or `switchyard cleanup` to remove them (established flows through this node are then lost)' +
        (detail === undefined ? '' : `\n${detail.trim().split('\n').slice(-3).join('\n')}`),
    );
    this.name = 'LayoutMismatchError';
  }
}

export class EbpfDatapath {
  readonly object: LoadedObject;
  private readonly pinDir: string;
  private readonly frontends: BpfMap<FrontendKey, FrontendValue>;
  private readonly slots: BpfMap<SlotKey, number>;
  private readonly backends: BpfMap<number, Backend>;
  private readonly revnat: BpfMap<number, RevNat>;
  private readonly ranges: BpfMap<SourceRangeKey, number>;
  private readonly config: BpfMap<number, DatapathConfig>;
  private readonly stats: BpfMap<number, Counter[]>;
  private readonly maglev: BpfMap<number, number>;
  private readonly serviceAddrs: BpfMap<ServiceAddr, number>;
  private readonly serviceCidrs: BpfMap<ServiceCidrKey, number>;
  /** What sy_service_addrs holds, as family|address. */
  private readonly writtenServiceAddrs = new Set<string>();
  /** Per address (family|address), how many programmed frontends of each kind use it; and those changed since the last sync. */
  private readonly addrUses = new Map<string, { service: number; nodePort: number }>();
  private readonly dirtyAddrs = new Set<string>();
  private readonly backendIds = new Map<string, number>();
  private readonly backendFlagsById = new Map<number, number>();
  private readonly serviceIds = new Map<string, number>();
  private readonly programmed = new Map<string, Programmed>();
  /** Backends found pinned at start, keyed once their service ports are known (first sync). */
  private adoptedBackends = new Map<number, Backend>();
  private timeouts: ConntrackTimeouts = DEFAULT_TIMEOUTS;
  /** Rev-NAT ids held after their frontend went, by address|port|family. */
  private readonly heldRevNat = new Map<string, number>();
  /** A sliced re-adoption is under way: the id tables are partial, gc() releases none. */
  private adopting = false;
  private ids: { backend: IdAllocator; set: IdAllocator; revnat: IdAllocator; service: IdAllocator };

  private constructor(object: LoadedObject, pinDir: string) {
    this.object = object;
    this.pinDir = pinDir;
    const u8 = { size: 1, align: 1, encodeInto: (v: number, b: Buffer, o: number) => void b.writeUInt8(v, o), decodeFrom: (b: Buffer, o: number) => b.readUInt8(o) };
    this.frontends = object.map('sy_frontends', frontendKey, frontendValue);
    this.slots = object.map('sy_slots', slotKey, u32);
    this.backends = object.map('sy_backends', u32, backendCodec);
    this.revnat = object.map('sy_revnat', u32, revNat);
    this.ranges = object.map('sy_source_ranges', sourceRangeKey, u8);
    this.config = object.map('sy_config', u32, datapathConfig);
    this.stats = object.map('sy_stats', u32, perCpu(counter, native().numPossibleCpus()));
    this.maglev = object.map('sy_maglev', u32, u32);
    this.serviceAddrs = object.map('sy_service_addrs', serviceAddr, u8);
    this.serviceCidrs = object.map('sy_service_cidrs', serviceCidrKey, u8);
    const size = (name: string): number => object.mapDescription(name).maxEntries;
    // Backends and rev-NAT entries are arrays indexed by id: ids 1..max_entries-1.
    this.ids = {
      backend: new IdAllocator(size('sy_backends') - 1),
      set: new IdAllocator(size('sy_slots')),
      // Flows name service ports and rev-NAT entries by id: those are reused only once no
      // tracked flow names them (gc()).
      revnat: new IdAllocator(size('sy_revnat') - 1, { quarantine: true }),
      service: new IdAllocator(size('sy_stats') - 1, { quarantine: true }),
    };
  }

  /**
   * Loads the datapath, reusing maps pinned under pinDir, and adopts what they hold. Pins of
   * another layout version are refused with LayoutMismatchError (nothing is touched).
   */
  static open(options: DatapathOptions): EbpfDatapath {
    const fromV1 = EbpfDatapath.preparePins(options);
    let object: LoadedObject;
    try {
      object = LoadedObject.load(options.object, { pinDir: options.pinDir, maxEntries: options.maxEntries });
    } catch (e) {
      throw EbpfDatapath.loadFailed(e, options, fromV1);
    }
    return EbpfDatapath.adoptLoaded(object, options, fromV1);
  }

  /** The same, verifying on a worker thread: the event loop runs meanwhile (the agent's first lists). */
  static async openAsync(options: DatapathOptions): Promise<EbpfDatapath> {
    const fromV1 = EbpfDatapath.preparePins(options);
    let object: LoadedObject;
    try {
      object = await LoadedObject.loadAsync(options.object, { pinDir: options.pinDir, maxEntries: options.maxEntries });
    } catch (e) {
      throw EbpfDatapath.loadFailed(e, options, fromV1);
    }
    return EbpfDatapath.adoptLoaded(object, options, fromV1);
  }

  /** Checks the pinned layout before the load; true when a version 1 layout is to be migrated. */
  private static preparePins(options: DatapathOptions): boolean {
    const pinnedMeta = `${options.pinDir}/sy_meta`;
    let fromV1 = false;
    if (existsSync(pinnedMeta)) {
      const m = BpfMap.fromPin(pinnedMeta, u32, meta);
      const found = m.get(0)?.layoutVersion ?? 0;
      m.close();
      // Version 1 is migrated in place (migrate.ts); any other version is refused.
      fromV1 = found === 1 && LAYOUT_VERSION === 2;
      if (found !== LAYOUT_VERSION && !fromV1) throw new LayoutMismatchError(options.pinDir, found);
      if (fromV1) prepareV1(options.pinDir);
    }
    // sy_config holds no state (configure() writes it whole): a pin of an older, shorter layout
    // is replaced rather than refused; programs still attached keep the map they have.
    const pinnedConfig = `${options.pinDir}/sy_config`;
    if (existsSync(pinnedConfig)) {
      if (BpfMap.pinnedInfo(pinnedConfig).valueSize !== datapathConfig.size) rmSync(pinnedConfig);
    }
    prepareSynTable(options.pinDir);
    return fromV1;
  }

  private static loadFailed(e: unknown, options: DatapathOptions, fromV1: boolean): unknown {
    // A pinned map that libbpf cannot reuse (its size or type differs) is a layout mismatch too.
    if (fromV1) abandonV1(options.pinDir);
    abandonSynTable(options.pinDir);
    if (e instanceof BpfError && /reuse pinned map/.test(e.libbpfLog ?? '')) return new LayoutMismatchError(options.pinDir, undefined, e.libbpfLog);
    return e;
  }

  private static adoptLoaded(object: LoadedObject, options: DatapathOptions, fromV1: boolean): EbpfDatapath {
    if (fromV1) {
      try {
        migrateV1(object, options.pinDir);
      } catch (e) {
        object.close();
        abandonV1(options.pinDir);
        throw new LayoutMismatchError(options.pinDir, 1, `migration to layout ${LAYOUT_VERSION} failed: ${(e as Error).message}`);
      }
    }
    adoptSynTable(object, options.pinDir);
    object.map('sy_meta', u32, meta).set(0, { layoutVersion: LAYOUT_VERSION });
    const dp = new EbpfDatapath(object, options.pinDir);
    dp.adopt();
    return dp;
  }

  /**
   * Forgets what it believes is programmed and reads the maps again, so the next sync repairs
   * whatever changed behind its back (the periodic resync).
   */
  readopt(): void {
    this.forget();
    drain(this.adoptSteps());
  }

  /** The same, a page of each map at a time, giving the event loop a turn whenever a slice has run sliceMs. */
  async readoptSliced(sliceMs = SLICE_MS): Promise<void> {
    this.forget();
    this.adopting = true;
    try {
      await drainSliced(this.adoptSteps(), sliceMs);
    } finally {
      this.adopting = false;
    }
  }

  private forget(): void {
    this.backendIds.clear();
    this.backendFlagsById.clear();
    this.serviceIds.clear();
    this.programmed.clear();
    this.addrUses.clear();
    this.dirtyAddrs.clear();
    this.heldRevNat.clear();
    this.writtenServiceAddrs.clear();
    this.adoptedBackends = new Map();
    for (const name of ['backend', 'set', 'revnat', 'service'] as const) this.ids[name] = new IdAllocator(this.ids[name].limit, { quarantine: this.ids[name].quarantine });
  }

  /** Rebuilds the id tables from the pinned maps, so the next sync is a diff, not a rebuild. */
  private adopt(): void {
    drain(this.adoptSteps());
  }

  /** adopt() as steps: one batched read per page of each map (1M slots: seconds of syscalls one by one), O(entries). */
  private *adoptSteps(): Generator<void> {
    // What the map holds is looked at again at the next sync: kept if a frontend still uses it.
    for (const [k] of this.serviceAddrs.entries()) {
      this.writtenServiceAddrs.add(`${k.family}|${k.addr}`);
      this.dirtyAddrs.add(`${k.family}|${k.addr}`);
    }
    for (const page of this.backends.entryPages()) {
      for (const [id, b] of page) {
        if (b.family === 0) continue; // a free id
        this.adoptedBackends.set(id, b);
        this.ids.backend.claim(id);
      }
      yield;
    }
    const ranges = new Map<number, string[]>();
    for (const page of this.ranges.entryPages()) {
      for (const [k] of page) {
        const list = ranges.get(k.revNatId) ?? [];
        list.push(`${k.addr}/${k.prefixlen - 32}`);
        ranges.set(k.revNatId, list);
      }
      yield;
    }
    const slotsBySet = new Map<number, Map<number, number>>();
    for (const page of this.slots.entryPages()) {
      for (const [k, id] of page) {
        let set = slotsBySet.get(k.setId);
        if (set === undefined) slotsBySet.set(k.setId, (set = new Map()));
        set.set(k.slot, id);
      }
      yield;
    }
    const inUse = new Set<number>();
    for (const page of this.frontends.entryPages()) {
      for (const [key, value] of page) {
        const backendIds: number[] = [];
        const set = slotsBySet.get(value.setId);
        for (let slot = 1; slot <= value.count; slot++) {
          const id = set?.get(slot);
          if (id !== undefined) backendIds.push(id);
        }
        this.ids.set.claim(value.setId);
        this.ids.revnat.claim(value.revNatId);
        this.ids.service.claim(value.serviceId);
        inUse.add(value.revNatId);
        this.setProgrammed(frontendKeyText(key), { key, value, backendIds, sourceRanges: ranges.get(value.revNatId) ?? [] });
      }
      yield;
    }
    // Rev-NAT entries of deleted frontends stay while their flows live: held, not free.
    for (const page of this.revnat.entryPages()) {
      for (const [id, rn] of page) {
        if (rn.family === 0 || id === 0) continue;
        if (!inUse.has(id)) {
          this.ids.revnat.claim(id);
          this.ids.revnat.release(id);
          this.heldRevNat.set(revNatText(rn), id);
        }
      }
      yield;
    }
  }

  /**
   * Ends a migration from an older layout once the new programs are attached everywhere (the
   * old ones used the old entries until then); nothing to do otherwise. Returns the entries moved.
   */
  finishMigration(): number {
    return v1Pending(this.pinDir) ? finishV1(this.object, this.pinDir) : 0;
  }

  /** How many frontends are programmed (adopted or written). */
  get frontendCount(): number {
    return this.programmed.size;
  }

  /** Node facts and settings; conntrack timeouts not given are kernel conntrack's (conntrack.ts). */
  configure(cfg: DatapathSettings): void {
    const t = DEFAULT_TIMEOUTS;
    const full: DatapathConfig = { ctTimeoutTcpSynNs: t.tcpSynNs, ctTimeoutTcpFinNs: t.tcpCloseWaitNs, ctTimeoutTcpClosedNs: t.tcpClosedNs, ctTimeoutUdpStreamNs: t.udpStreamNs, ...cfg };
    this.timeouts = { tcpEstablishedNs: full.ctTimeoutTcpNs, tcpSynNs: full.ctTimeoutTcpSynNs, tcpCloseWaitNs: full.ctTimeoutTcpFinNs, tcpClosedNs: full.ctTimeoutTcpClosedNs, udpNs: full.ctTimeoutUdpNs, udpStreamNs: full.ctTimeoutUdpStreamNs };
    this.config.set(0, full);
  }

  get conntrackTimeouts(): ConntrackTimeouts {
    return this.timeouts;
  }

  programFd(name: string): number {
    return this.object.programFd(name);
  }

  /**
   * The CIDRs whose unallocated addresses the datapath drops (the plan's unallocatedDropCIDRs):
   * sy_service_cidrs made to hold exactly these, read back each time (a handful of entries), so a
   * pinned map from an earlier agent is put right too. Returns whether anything changed.
   */
  setServiceCidrs(cidrs: readonly string[]): boolean {
    const keyOf = (text: string): ServiceCidrKey | undefined => {
      const c = parseCidr(text);
      return c === undefined ? undefined : { prefixlen: 32 + c.prefix, family: c.family, addr: c.text.slice(0, c.text.indexOf('/')) };
    };
    const textOf = (k: ServiceCidrKey): string => `${k.addr}/${k.prefixlen - 32}`;
    const want = new Map<string, ServiceCidrKey>();
    for (const text of cidrs) {
      const k = keyOf(text);
      if (k !== undefined) want.set(textOf(k), k);
    }
    let changed = false;
    for (const [k] of [...this.serviceCidrs.entries()]) {
      if (want.delete(textOf(k))) continue;
      this.serviceCidrs.delete(k);
      changed = true;
    }
    for (const k of want.values()) {
      this.serviceCidrs.set(k, 1);
      changed = true;
    }
    return changed;
  }

  /** What sy_service_cidrs holds, as CIDR texts. */
  serviceCidrList(): string[] {
    return [...this.serviceCidrs.entries()].map(([k]) => `${k.addr}/${k.prefixlen - 32}`).sort();
  }

  /** Per-CPU counters summed, by service id. */
  counters(serviceId: number): Counter {
    const per = this.stats.get(serviceId) ?? [];
    return per.reduce((a, c) => ({ packets: a.packets + c.packets, bytes: a.bytes + c.bytes }), { packets: 0n, bytes: 0n });
  }

  /** Packets and bytes per service port, summed over CPUs. */
  serviceStats(): Array<{ servicePort: string; packets: bigint; bytes: bigint }> {
    return [...this.serviceIds].map(([servicePort, id]) => ({ servicePort, ...this.counters(id) }));
  }

  /** Entries and capacity of every hash-like map, and the ids in use of the id-indexed arrays. */
  mapStats(): Array<{ name: string; entries: number; maxEntries: number }> {
    const byId: Record<string, IdAllocator> = { sy_backends: this.ids.backend, sy_revnat: this.ids.revnat };
    return this.object
      .mapNames()
      .map((name) => this.object.mapDescription(name))
      .flatMap((m) => {
        const ids = byId[m.name];
        if (ids !== undefined) return [{ name: m.name, entries: ids.size, maxEntries: ids.limit }];
        if (m.type === MAP_TYPE.ARRAY || m.type === MAP_TYPE.PERCPU_ARRAY) return []; // always full
        return [{ name: m.name, entries: countEntries(m.fd), maxEntries: m.maxEntries }];
      });
  }

  conntrackEntries(): number {
    return CT_TABLES.reduce((n, name) => n + countEntries(this.object.mapDescription(name).fd), 0);
  }

  /** The tracked entry for a tuple, in whichever table holds it. */
  conntrackEntry(k: CtKey): { table: (typeof CT_TABLES)[number]; value: CtValue } | undefined {
    for (const table of CT_TABLES) {
      const value = this.object.map(table, ctKey, ctValue).get(k);
      if (value !== undefined) return { table, value };
    }
    return undefined;
  }

  /**
   * What a takeover needs to recognise the flows another proxy translated: each programmed
   * frontend with its ids and every backend its service port may use (set members and
   * terminating ones), with their ids.
   */
  frontendsWithBackends(): Array<{ key: FrontendKey; revNatId: number; serviceId: number; backends: Array<{ id: number; addr: string; port: number }> }> {
    const byService = new Map<number, Array<{ id: number; addr: string; port: number }>>();
    for (const [key, id] of this.backendIds) {
      // backendKey: servicePort|addr|port|proto (the service port itself may hold a '|').
      const parts = key.split('|');
      const servicePort = parts.slice(0, -3).join('|');
      const serviceId = this.serviceIds.get(servicePort);
      if (serviceId === undefined) continue;
      const list = byService.get(serviceId) ?? [];
      list.push({ id, addr: parts[parts.length - 3]!, port: Number(parts[parts.length - 2]) });
      byService.set(serviceId, list);
    }
    return [...this.programmed.values()].map((p) => ({ key: p.key, revNatId: p.value.revNatId, serviceId: p.value.serviceId, backends: byService.get(p.value.serviceId) ?? [] }));
  }

  /** Packets the datapath dropped, per reason, summed over CPUs. */
  drops(): Record<DropReason, bigint> {
    const map = this.object.map('sy_drops', u32, perCpu(u64, native().numPossibleCpus()));
    return Object.fromEntries(DROP_REASONS.map((reason, i) => [reason, (map.get(i) ?? []).reduce((a, b) => a + b, 0n)])) as Record<DropReason, bigint>;
  }

  /**
   * One garbage collection pass over connection tracking and affinity: expired flows go (both
   * directions), and the service and rev-NAT ids no live entry names leave quarantine.
   */
  async gc(now: bigint = monotonicCoarseNs()): Promise<GcReport> {
    const lookup: PartnerLookup = {
      backend: (id) => {
        const b = this.backends.get(id);
        return b === undefined || b.family === 0 ? undefined : b;
      },
      frontend: (id) => {
        const rn = this.revnat.get(id);
        return rn === undefined || rn.family === 0 ? undefined : rn;
      },
    };
    const report: GcReport = { entriesBefore: 0, entriesAfter: 0, deleted: 0, refreshed: 0, affinityDeleted: 0, idsReleased: 0, hostEntries: 0 };
    const serviceIds = new Set<number>();
    const revNatIds = new Set<number>();
    for (const name of CT_TABLES) {
      const r = await sweep(this.object.map(name, ctKey, ctValue), this.timeouts, lookup, now);
      report.entriesBefore += r.before;
      report.entriesAfter += r.after;
      report.deleted += r.deleted;
      report.refreshed += r.refreshed;
      report.hostEntries += r.host;
      for (const id of r.serviceIds) serviceIds.add(id);
      for (const id of r.revNatIds) revNatIds.add(id);
    }
    // Service ports and ids not read back yet would look deleted and unused: affinity and ids wait.
    if (this.adopting) return report;
    // Affinity: entries of live service ports expire by their timeout; those of deleted ones go.
    const timeoutOf = new Map<number, number>();
    for (const p of this.programmed.values()) timeoutOf.set(p.value.serviceId, Math.max(timeoutOf.get(p.value.serviceId) ?? 0, p.value.affinityTimeout));
    const affinity = this.object.map('sy_affinity', affinityKey, affinityValue);
    const stale: AffinityKey[] = [];
    for await (const page of affinity.pages()) {
      for (const [k, v] of page) {
        const timeout = timeoutOf.get(k.serviceId);
        if (timeout === undefined || now - v.lastSeen > BigInt(timeout) * 1_000_000_000n) stale.push(k);
        else serviceIds.add(k.serviceId);
      }
    }
    for (const k of stale) if (affinity.delete(k)) report.affinityDeleted++;
    const freedRevNat = new Set(this.ids.revnat.releaseUnreferenced(revNatIds));
    for (const [text, id] of this.heldRevNat) if (freedRevNat.has(id)) this.heldRevNat.delete(text);
    if (freedRevNat.size > 0) this.revnat.setMany([...freedRevNat].map((id) => [id, FREE_REVNAT] as const));
    report.idsReleased += freedRevNat.size;
    report.idsReleased += this.ids.service.releaseUnreferenced(serviceIds).length;
    return report;
  }

  serviceIdOf(servicePort: string): number | undefined {
    return this.serviceIds.get(servicePort);
  }

  /**
   * Applies the whole compiled state: what it lacks is removed. A frontend that does not fit is
   * reported and left as it was.
   */
  sync(compiled: CompiledDatapath): SyncReport {
    const report = drain(this.fullSteps(compiled));
    // After the frontends: a new ClusterIP in a new range is served before its range drops.
    if (compiled.serviceCidrs !== undefined) this.setServiceCidrs(compiled.serviceCidrs);
    return report;
  }

  /** The same, yielding to the event loop whenever a slice has run sliceMs. */
  async syncSliced(compiled: CompiledDatapath, sliceMs = SLICE_MS): Promise<SyncReport> {
    const report = await drainSliced(this.fullSteps(compiled), sliceMs);
    if (compiled.serviceCidrs !== undefined) this.setServiceCidrs(compiled.serviceCidrs);
    return report;
  }

  /**
   * Applies what changed (CompiledModel's delta): only the entries it names are written or
   * removed. Needs a full sync first (adopted pins are matched to service ports there).
   */
  apply(delta: CompiledDelta, unsupported: SyncReport['unsupported'] = []): SyncReport {
    return drain(this.applySteps(deltaChanges(delta), unsupported));
  }

  /** True once adopted pins are matched to their service ports (a full sync did it). */
  get settled(): boolean {
    return this.adoptedBackends.size === 0;
  }

  /**
   * A full sync as steps: adopted entries matched to the compiled state's service ports, then
   * everything it holds applied, and whatever else is programmed removed.
   */
  private *fullSteps(compiled: CompiledDatapath): Generator<void, SyncReport> {
    let n = 0;
    // Service ids of adopted frontends are learnt from the compiled specs they match...
    for (const [text, spec] of compiled.frontends) {
      if ((++n & 1023) === 0) yield;
      const p = this.programmed.get(text);
      if (p !== undefined && !this.serviceIds.has(spec.servicePort)) this.serviceIds.set(spec.servicePort, p.value.serviceId);
    }
    // ...and with them the keys of adopted backends; those of services now gone are deleted.
    if (this.adoptedBackends.size > 0) {
      const portOf = new Map<number, string>();
      for (const [sp, id] of this.serviceIds) {
        portOf.set(id, sp);
        if ((++n & 1023) === 0) yield;
      }
      for (const [id, b] of this.adoptedBackends) {
        if ((++n & 1023) === 0) yield;
        const servicePort = portOf.get(b.serviceId);
        const key = servicePort === undefined ? `orphan|${id}` : backendKey({ servicePort, addr: b.addr, port: b.port, proto: b.proto });
        this.backendIds.set(key, id);
        this.backendFlagsById.set(id, b.flags);
      }
      this.adoptedBackends = new Map();
    }
    // Filled as the apply walks it (its first step), read by deadPorts (its last).
    const live = new Set<string>();
    const programmed = this.programmed;
    const backendIds = this.backendIds;
    const serviceIds = this.serviceIds;
    const changes: Changes = {
      *livePorts() {
        let n = 0;
        for (const f of compiled.frontends.values()) {
          if ((++n & 1023) === 0) yield null;
          if (live.has(f.servicePort)) continue;
          live.add(f.servicePort);
          yield f.servicePort;
        }
        for (const b of compiled.backends.values()) {
          if ((++n & 1023) === 0) yield null;
          if (live.has(b.servicePort)) continue;
          live.add(b.servicePort);
          yield b.servicePort;
        }
      },
      frontendWrites: compiled.frontends,
      backendWrites: compiled.backends,
      // Evaluated after the writes, which add only keys the compiled state has.
      *frontendRemovals() {
        let n = 0;
        for (const text of programmed.keys()) if (!compiled.frontends.has(text)) yield text;
        else if ((++n & 1023) === 0) yield null;
      },
      *backendRemovals() {
        let n = 0;
        for (const key of backendIds.keys()) if (!compiled.backends.has(key)) yield key;
        else if ((++n & 1023) === 0) yield null;
      },
      *deadPorts() {
        let n = 0;
        for (const sp of serviceIds.keys()) if (!live.has(sp)) yield sp;
        else if ((++n & 1023) === 0) yield null;
      },
    };
    return yield* this.applySteps(changes, compiled.unsupported);
  }

  /**
   * The apply, as steps (each yield is a point where the event loop may run): service ids, then
   * backends (new ones, and flag changes such as terminating) in batches, then each frontend
   * make-before-break (new set, flip, old set away), then frontends that are gone, then backends
   * nothing may use any more, then the service ids of service ports that are gone.
   */
  private *applySteps(c: Changes, unsupported: SyncReport['unsupported']): Generator<void, SyncReport> {
    const report: SyncReport = { frontendsWritten: 0, frontendsRemoved: 0, backendsWritten: 0, backendsRemoved: 0, failed: [], unsupported };
    const noId = new Set<string>();
    let n = 0;
    for (const sp of c.livePorts()) {
      if ((++n & 1023) === 0 || sp === null) yield;
      if (sp === null || this.serviceIds.has(sp)) continue;
      try {
        this.serviceIds.set(sp, this.ids.service.alloc());
      } catch (e) {
        noId.add(sp);
        report.failed.push({ frontend: sp, servicePort: sp, error: idError('sy_stats', 'service ids', e) });
      }
    }
    yield;
    let batch: BackendWrite[] = [];
    const flush = (): void => {
      for (const w of this.writeBackends(batch, report)) {
        this.backendIds.set(w.key, w.id);
        this.backendFlagsById.set(w.id, w.value.flags);
        report.backendsWritten++;
      }
      batch = [];
    };
    for (const [key, b] of c.backendWrites) {
      if ((++n & 1023) === 0) yield;
      if (b === undefined) continue;
      const known = this.backendIds.get(key);
      const flags = backendFlags(b);
      if (known !== undefined && this.backendFlagsById.get(known) === flags) continue;
      const serviceId = this.serviceIds.get(b.servicePort);
      if (serviceId === undefined) continue; // its service port got no id: reported above
      try {
        const id = known ?? this.ids.backend.alloc();
        batch.push({ key, id, fresh: known === undefined, value: { addr: b.addr, port: b.port, proto: b.proto, family: b.family, flags, serviceId } });
      } catch (e) {
        report.failed.push({ frontend: `backend ${key}`, servicePort: b.servicePort, error: idError('sy_backends', 'backend ids', e) });
      }
      if (batch.length >= BACKEND_BATCH) {
        flush();
        yield;
      }
    }
    flush();
    yield;
    for (const [text, spec] of c.frontendWrites) {
      if ((++n & 255) === 0) yield;
      if (spec === undefined) continue;
      if (noId.has(spec.servicePort)) continue; // reported above
      try {
        if (this.writeFrontend(text, spec)) report.frontendsWritten++;
      } catch (e) {
        report.failed.push({ frontend: text, servicePort: spec.servicePort, error: e instanceof MapFullError ? `map full: ${e.message}` : e instanceof RangeError ? idError('sy_revnat', 'rev-NAT ids', e) : (e as Error).message });
      }
    }
    for (const text of c.frontendRemovals()) {
      if ((++n & 255) === 0 || text === null) yield;
      if (text === null) continue;
      const p = this.programmed.get(text);
      if (p === undefined) continue;
      this.frontends.delete(p.key);
      this.maglev.delete(p.value.setId);
      this.deleteSlots(p.value.setId, p.backendIds.length);
      this.ids.set.release(p.value.setId);
      for (const r of p.sourceRanges) this.ranges.delete(rangeKey(p.value.revNatId, r));
      // The rev-NAT entry stays until no flow names it (gc()): the answers of connections
      // still open keep coming from the service address, as with kube-proxy's conntrack NAT.
      this.ids.revnat.release(p.value.revNatId);
      this.heldRevNat.set(revNatText({ addr: p.key.addr, port: p.key.port, family: p.key.family }), p.value.revNatId);
      this.deleteProgrammed(text);
      report.frontendsRemoved++;
    }
    let freed: Array<[string, number]> = [];
    const free = (): void => {
      if (freed.length > 0) this.backends.setMany(freed.map(([, id]) => [id, FREE_BACKEND] as const));
      for (const [key, id] of freed) {
        this.backendIds.delete(key);
        this.backendFlagsById.delete(id);
        this.ids.backend.release(id);
        report.backendsRemoved++;
      }
      freed = [];
    };
    for (const key of c.backendRemovals()) {
      if ((++n & 1023) === 0 || key === null) yield;
      if (key === null) continue;
      const id = this.backendIds.get(key);
      if (id === undefined) continue;
      freed.push([key, id]);
      if (freed.length >= BACKEND_BATCH) {
        free();
        yield;
      }
    }
    free();
    for (const sp of c.deadPorts()) {
      if ((++n & 1023) === 0 || sp === null) yield;
      if (sp === null) continue;
      const id = this.serviceIds.get(sp);
      if (id === undefined) continue;
      this.serviceIds.delete(sp);
      this.ids.service.release(id);
    }
    this.syncServiceAddrs();
    return report;
  }

  /** How an address is used by programmed frontends: by service frontends, by NodePort ones. */
  private addrUse(text: string): { service: number; nodePort: number } {
    let u = this.addrUses.get(text);
    if (u === undefined) this.addrUses.set(text, (u = { service: 0, nodePort: 0 }));
    return u;
  }

  private countFrontend(p: { key: FrontendKey; value: FrontendValue }, delta: 1 | -1): void {
    const text = `${p.key.family}|${p.key.addr}`;
    const u = this.addrUse(text);
    if (p.value.flags & FE.NODE_PORT) u.nodePort += delta;
    else if (p.value.flags & (FE.CLUSTER_IP | FE.EXTERNAL_IP | FE.LOAD_BALANCER)) u.service += delta;
    else return;
    if (u.service === 0 && u.nodePort === 0) this.addrUses.delete(text);
    this.dirtyAddrs.add(text);
  }

  /** Every change of `programmed` goes through these two, so sy_service_addrs can follow it per address. */
  private setProgrammed(text: string, p: Programmed): void {
    const old = this.programmed.get(text);
    if (old !== undefined) this.countFrontend(old, -1);
    this.programmed.set(text, p);
    this.countFrontend(p, 1);
  }

  private deleteProgrammed(text: string): void {
    const old = this.programmed.get(text);
    if (old === undefined) return;
    this.countFrontend(old, -1);
    this.programmed.delete(text);
  }

  /**
   * sy_service_addrs follows the programmed frontends: the addresses only services use (ClusterIP,
   * external IP, load-balancer IP), never one a NodePort frontend names (a node address). The
   * datapath drops a later fragment to one of them whose first it has not seen (bpf/include/frag.h).
   * Only the addresses whose use changed since the last call are looked at: a one-port change
   * costs that port's addresses, not a walk of every frontend.
   */
  private syncServiceAddrs(): void {
    if (this.dirtyAddrs.size === 0) return;
    const keyOf = (text: string): ServiceAddr => {
      const bar = text.indexOf('|');
      return { family: Number(text.slice(0, bar)), addr: text.slice(bar + 1) };
    };
    const added: string[] = [];
    const gone: string[] = [];
    for (const t of this.dirtyAddrs) {
      const u = this.addrUses.get(t);
      const want = u !== undefined && u.service > 0 && u.nodePort === 0;
      if (want && !this.writtenServiceAddrs.has(t)) added.push(t);
      else if (!want && this.writtenServiceAddrs.has(t)) gone.push(t);
    }
    this.dirtyAddrs.clear();
    if (added.length > 0) this.serviceAddrs.setMany(added.map((t) => [keyOf(t), 1] as const));
    for (const t of added) this.writtenServiceAddrs.add(t);
    if (gone.length > 0) this.serviceAddrs.deleteMany(gone.map(keyOf));
    for (const t of gone) this.writtenServiceAddrs.delete(t);
  }

  /** Writes one frontend; returns whether anything changed. Throws (having undone its own writes) when a map is full. */
  private writeFrontend(text: string, spec: FrontendSpec): boolean {
    const current = this.programmed.get(text);
    const backendIds = spec.backends.map((k) => this.backendIds.get(k)).filter((id): id is number => id !== undefined);
    if (backendIds.length !== spec.backends.length) throw new Error('some of its backends could not be written');
    const serviceId = this.serviceIds.get(spec.servicePort);
    if (serviceId === undefined) throw new Error('its service port has no id');
    const newRevNat = current === undefined;
    // A held rev-NAT entry of the same address and port (the frontend is back) is taken again:
    // it names what its flows' answers must carry.
    const held = newRevNat ? this.heldRevNat.get(revNatText(spec)) : undefined;
    if (held !== undefined) {
      this.heldRevNat.delete(revNatText(spec));
      this.ids.revnat.claim(held);
    }
    const revNatId = current?.value.revNatId ?? held ?? this.ids.revnat.alloc();
    const sameSet = current !== undefined && current.backendIds.length === backendIds.length && current.backendIds.every((id, i) => id === backendIds[i]);
    const setId = sameSet ? current.value.setId : this.ids.set.alloc();
    const written: SlotKey[] = [];
    const addedRanges: SourceRangeKey[] = [];
    let tableWritten = false;
    try {
      if (newRevNat) this.revnat.set(revNatId, { addr: spec.addr, port: spec.port, family: spec.family, flags: spec.nodeAddress ? RN.NODE_ADDRESS : 0 });
      if (!sameSet) {
        const slots = backendIds.map((id, i) => [{ setId, slot: i + 1 }, id] as const);
        written.push(...slots.map(([k]) => k)); // before the write: a partial batch is undone whole
        if (slots.length > 0) this.slots.setMany(slots);
      }
      const maglev = spec.algorithm === ALGORITHM.maglev && backendIds.length > 0;
      if (maglev && (!sameSet || current.value.algorithm !== ALGORITHM.maglev)) {
        this.writeMaglevTable(setId, backendIds, spec.backends);
        tableWritten = true;
      }
      for (const r of spec.sourceRanges) {
        if (current?.sourceRanges.includes(r)) continue;
        const k = rangeKey(revNatId, r);
        this.ranges.set(k, 1);
        addedRanges.push(k);
      }
      const key: FrontendKey = { addr: spec.addr, port: spec.port, proto: spec.proto, family: spec.family, scope: spec.scope };
      const value: FrontendValue = { setId, revNatId, serviceId, affinityTimeout: spec.affinityTimeout, count: backendIds.length, algorithm: spec.algorithm, flags: spec.flags };
      const unchanged = current !== undefined && sameSet && sameFrontendValue(current.value, value) && current.sourceRanges.length === spec.sourceRanges.length && addedRanges.length === 0;
      if (unchanged) return false;
      this.frontends.set(key, value); // the flip: packets see the old set or the new one, never a mix
      if (current !== undefined && !sameSet) {
        this.maglev.delete(current.value.setId);
        this.deleteSlots(current.value.setId, current.backendIds.length);
        this.ids.set.release(current.value.setId);
      } else if (current !== undefined && value.algorithm !== ALGORITHM.maglev) {
        this.maglev.delete(setId);
      }
      for (const r of current?.sourceRanges ?? []) if (!spec.sourceRanges.includes(r)) this.ranges.delete(rangeKey(revNatId, r));
      this.setProgrammed(text, { key, value, backendIds, sourceRanges: [...spec.sourceRanges] });
      return true;
    } catch (e) {
      if (tableWritten && !sameSet) this.maglev.delete(setId);
      for (const k of written) this.slots.delete(k);
      for (const k of addedRanges) this.ranges.delete(k);
      if (!sameSet) this.ids.set.release(setId);
      if (newRevNat) {
        this.revnat.set(revNatId, FREE_REVNAT);
        this.ids.revnat.release(revNatId);
      }
      throw e;
    }
  }

  /**
   * Builds the set's Maglev table in a fresh inner map and inserts it whole: a flow never sees a
   * half-filled table. Backends are named by address and port, so every node builds the same table.
   */
  private writeMaglevTable(setId: number, backendIds: readonly number[], backendKeys: readonly string[]): void {
    const names = backendKeys.map((k) => k.split('|').slice(1, 3).join('|'));
    const table = maglevTable(names, MAGLEV_M);
    const inner = call(() => native().mapCreate(MAP_TYPE.ARRAY, 4, 4, MAGLEV_M, 'sy_maglev_tbl'));
    try {
      const keys = Buffer.alloc(4 * MAGLEV_M);
      const values = Buffer.alloc(4 * MAGLEV_M);
      for (let i = 0; i < MAGLEV_M; i++) {
        keys.writeUInt32LE(i, 4 * i);
        values.writeUInt32LE(backendIds[table[i]!]!, 4 * i);
      }
      call(() => native().mapUpdateBatch(inner, keys, values, MAGLEV_M, 0));
      this.maglev.set(setId, inner);
    } finally {
      native().closeFd(inner);
    }
  }

  /**
   * Writes backends in batches; a batch the kernel refuses is retried entry by entry, so that
   * each failure is reported with its backend. Returns the writes that landed.
   */
  private writeBackends(writes: readonly BackendWrite[], report: SyncReport): BackendWrite[] {
    try {
      if (writes.length > 0) this.backends.setMany(writes.map((w) => [w.id, w.value] as const));
      return [...writes];
    } catch {
      const landed: BackendWrite[] = [];
      for (const w of writes) {
        try {
          this.backends.set(w.id, w.value);
          landed.push(w);
        } catch (e) {
          if (w.fresh) this.ids.backend.release(w.id);
          report.failed.push({ frontend: `backend ${w.key}`, error: (e as Error).message });
        }
      }
      return landed;
    }
  }

  /** Deletes a set's slots in one batch; one by one when some are missing (a rollback's partial set). */
  private deleteSlots(setId: number, count: number): void {
    const keys = Array.from({ length: count }, (_, i) => ({ setId, slot: i + 1 }));
    if (keys.length === 0) return;
    try {
      this.slots.deleteMany(keys);
    } catch {
      for (const k of keys) this.slots.delete(k);
    }
  }

  close(): void {
    this.object.close();
  }
}
