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
  type SlotKey,
  type SourceRangeKey,
} from '../../bpf/layout.ts';
import { parseCidr } from '../../model/ip.ts';
import { backendFlags, backendKey, frontendKeyText, type CompiledDatapath, type FrontendSpec } from './compile.ts';
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
  failed: Array<{ frontend: string; error: string }>;
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
  /** What sy_service_addrs holds, as family|address. */
  private readonly writtenServiceAddrs = new Set<string>();
  private readonly backendIds = new Map<string, number>();
  private readonly backendFlagsById = new Map<number, number>();
  private readonly serviceIds = new Map<string, number>();
  private readonly programmed = new Map<string, Programmed>();
  /** Backends found pinned at start, keyed once their service ports are known (first sync). */
  private adoptedBackends = new Map<number, Backend>();
  private timeouts: ConntrackTimeouts = DEFAULT_TIMEOUTS;
  /** Rev-NAT ids held after their frontend went, by address|port|family. */
  private readonly heldRevNat = new Map<string, number>();
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
    let object: LoadedObject;
    try {
      object = LoadedObject.load(options.object, { pinDir: options.pinDir, maxEntries: options.maxEntries });
    } catch (e) {
      // A pinned map that libbpf cannot reuse (its size or type differs) is a layout mismatch too.
      if (fromV1) abandonV1(options.pinDir);
      if (e instanceof BpfError && /reuse pinned map/.test(e.libbpfLog ?? '')) throw new LayoutMismatchError(options.pinDir, undefined, e.libbpfLog);
      throw e;
    }
    if (fromV1) {
      try {
        migrateV1(object, options.pinDir);
      } catch (e) {
        object.close();
        abandonV1(options.pinDir);
        throw new LayoutMismatchError(options.pinDir, 1, `migration to layout ${LAYOUT_VERSION} failed: ${(e as Error).message}`);
      }
    }
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
    this.backendIds.clear();
    this.backendFlagsById.clear();
    this.serviceIds.clear();
    this.programmed.clear();
    this.heldRevNat.clear();
    this.writtenServiceAddrs.clear();
    this.adoptedBackends = new Map();
    for (const name of ['backend', 'set', 'revnat', 'service'] as const) this.ids[name] = new IdAllocator(this.ids[name].limit, { quarantine: this.ids[name].quarantine });
    this.adopt();
  }

  /** Rebuilds the id tables from the pinned maps, so the next sync is a diff, not a rebuild. */
  private adopt(): void {
    for (const [k] of this.serviceAddrs.entries()) this.writtenServiceAddrs.add(`${k.family}|${k.addr}`);
    for (const [id, b] of this.backends.entries()) {
      if (b.family === 0) continue; // a free id
      this.adoptedBackends.set(id, b);
      this.ids.backend.claim(id);
    }
    const ranges = new Map<number, string[]>();
    for (const [k] of this.ranges.entries()) {
      const list = ranges.get(k.revNatId) ?? [];
      list.push(`${k.addr}/${k.prefixlen - 32}`);
      ranges.set(k.revNatId, list);
    }
    // One batched read of every slot instead of a lookup per slot (1M slots: seconds of syscalls).
    const slotsBySet = new Map<number, Map<number, number>>();
    for (const [k, id] of this.slots.entries()) {
      let set = slotsBySet.get(k.setId);
      if (set === undefined) slotsBySet.set(k.setId, (set = new Map()));
      set.set(k.slot, id);
    }
    for (const [key, value] of this.frontends.entries()) {
      const backendIds: number[] = [];
      const set = slotsBySet.get(value.setId);
      for (let slot = 1; slot <= value.count; slot++) {
        const id = set?.get(slot);
        if (id !== undefined) backendIds.push(id);
      }
      this.ids.set.claim(value.setId);
      this.ids.revnat.claim(value.revNatId);
      this.ids.service.claim(value.serviceId);
      this.programmed.set(frontendKeyText(key), { key, value, backendIds, sourceRanges: ranges.get(value.revNatId) ?? [] });
    }
    // Rev-NAT entries of deleted frontends stay while their flows live: held, not free.
    const inUse = new Set([...this.programmed.values()].map((p) => p.value.revNatId));
    for (const [id, rn] of this.revnat.entries()) {
      if (rn.family === 0 || id === 0) continue;
      if (!inUse.has(id)) {
        this.ids.revnat.claim(id);
        this.ids.revnat.release(id);
        this.heldRevNat.set(revNatText(rn), id);
      }
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
    const report: GcReport = { entriesBefore: 0, entriesAfter: 0, deleted: 0, refreshed: 0, affinityDeleted: 0, idsReleased: 0 };
    const serviceIds = new Set<number>();
    const revNatIds = new Set<number>();
    for (const name of CT_TABLES) {
      const r = await sweep(this.object.map(name, ctKey, ctValue), this.timeouts, lookup, now);
      report.entriesBefore += r.before;
      report.entriesAfter += r.after;
      report.deleted += r.deleted;
      report.refreshed += r.refreshed;
      for (const id of r.serviceIds) serviceIds.add(id);
      for (const id of r.revNatIds) revNatIds.add(id);
    }
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

  /** Applies compiled state; a frontend that does not fit is reported and left as it was. */
  sync(compiled: CompiledDatapath): SyncReport {
    const report: SyncReport = { frontendsWritten: 0, frontendsRemoved: 0, backendsWritten: 0, backendsRemoved: 0, failed: [], unsupported: compiled.unsupported };
    // Service ids of adopted frontends are learnt from the compiled specs they match...
    for (const [text, spec] of compiled.frontends) {
      const p = this.programmed.get(text);
      if (p !== undefined && !this.serviceIds.has(spec.servicePort)) this.serviceIds.set(spec.servicePort, p.value.serviceId);
    }
    // ...and with them the keys of adopted backends; those of services now gone are deleted below.
    if (this.adoptedBackends.size > 0) {
      const portOf = new Map([...this.serviceIds].map(([sp, id]) => [id, sp]));
      for (const [id, b] of this.adoptedBackends) {
        const servicePort = portOf.get(b.serviceId);
        const key = servicePort === undefined ? `orphan|${id}` : backendKey({ servicePort, addr: b.addr, port: b.port, proto: b.proto });
        this.backendIds.set(key, id);
        this.backendFlagsById.set(id, b.flags);
      }
      this.adoptedBackends = new Map();
    }
    // Every service port gets its id before its backends are written.
    for (const spec of compiled.frontends.values()) {
      if (!this.serviceIds.has(spec.servicePort)) {
        try {
          this.serviceIds.set(spec.servicePort, this.ids.service.alloc());
        } catch (e) {
          report.failed.push({ frontend: spec.servicePort, error: (e as Error).message });
        }
      }
    }
    // 1. Backends (new ones, and flag changes such as terminating), written in batches.
    const backendWrites: BackendWrite[] = [];
    for (const [key, b] of compiled.backends) {
      const known = this.backendIds.get(key);
      const flags = backendFlags(b);
      const serviceId = this.serviceIds.get(b.servicePort);
      if (serviceId === undefined) continue; // its service port got no id: reported above
      if (known !== undefined && this.backendFlagsById.get(known) === flags) continue;
      try {
        const id = known ?? this.ids.backend.alloc();
        backendWrites.push({ key, id, fresh: known === undefined, value: { addr: b.addr, port: b.port, proto: b.proto, family: b.family, flags, serviceId } });
      } catch (e) {
        report.failed.push({ frontend: `backend ${key}`, error: (e as Error).message });
      }
    }
    for (const w of this.writeBackends(backendWrites, report)) {
      this.backendIds.set(w.key, w.id);
      this.backendFlagsById.set(w.id, w.value.flags);
      report.backendsWritten++;
    }
    // 2. Frontends: new set, flip, old set away.
    for (const [text, spec] of compiled.frontends) {
      try {
        if (this.writeFrontend(text, spec)) report.frontendsWritten++;
      } catch (e) {
        report.failed.push({ frontend: text, error: e instanceof MapFullError ? `map full: ${e.message}` : (e as Error).message });
      }
    }
    // 3. Frontends that are gone, then backends nothing may use any more.
    for (const [text, p] of [...this.programmed]) {
      if (compiled.frontends.has(text)) continue;
      this.frontends.delete(p.key);
      this.maglev.delete(p.value.setId);
      this.deleteSlots(p.value.setId, p.backendIds.length);
      this.ids.set.release(p.value.setId);
      for (const r of p.sourceRanges) this.ranges.delete(rangeKey(p.value.revNatId, r));
      // The rev-NAT entry stays until no flow names it (gc()): the answers of connections
      // still open keep coming from the service address, as with kube-proxy's conntrack NAT.
      this.ids.revnat.release(p.value.revNatId);
      this.heldRevNat.set(revNatText({ addr: p.key.addr, port: p.key.port, family: p.key.family }), p.value.revNatId);
      this.programmed.delete(text);
      report.frontendsRemoved++;
    }
    const freed = [...this.backendIds].filter(([key]) => !compiled.backends.has(key));
    if (freed.length > 0) this.backends.setMany(freed.map(([, id]) => [id, FREE_BACKEND] as const));
    for (const [key, id] of freed) {
      this.backendIds.delete(key);
      this.backendFlagsById.delete(id);
      this.ids.backend.release(id);
      report.backendsRemoved++;
    }
    const live = new Set([...compiled.frontends.values()].map((f) => f.servicePort));
    for (const [sp, id] of [...this.serviceIds]) {
      if (live.has(sp)) continue;
      this.serviceIds.delete(sp);
      this.ids.service.release(id);
    }
    this.syncServiceAddrs();
    return report;
  }

  /**
   * sy_service_addrs follows the programmed frontends: the addresses only services use (ClusterIP,
   * external IP, load-balancer IP), never one a NodePort frontend names (a node address). The
   * datapath drops a later fragment to one of them whose first it has not seen (bpf/include/frag.h).
   */
  private syncServiceAddrs(): void {
    const owned = FE.CLUSTER_IP | FE.EXTERNAL_IP | FE.LOAD_BALANCER;
    const nodePort = new Set<string>();
    const wanted = new Set<string>();
    for (const p of this.programmed.values()) {
      const text = `${p.key.family}|${p.key.addr}`;
      if (p.value.flags & FE.NODE_PORT) nodePort.add(text);
      else if (p.value.flags & owned) wanted.add(text);
    }
    for (const text of nodePort) wanted.delete(text);
    const keyOf = (text: string): ServiceAddr => {
      const bar = text.indexOf('|');
      return { family: Number(text.slice(0, bar)), addr: text.slice(bar + 1) };
    };
    const added = [...wanted].filter((t) => !this.writtenServiceAddrs.has(t));
    const gone = [...this.writtenServiceAddrs].filter((t) => !wanted.has(t));
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
      const unchanged = current !== undefined && sameSet && JSON.stringify(current.value) === JSON.stringify(value) && current.sourceRanges.length === spec.sourceRanges.length && addedRanges.length === 0;
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
      this.programmed.set(text, { key, value, backendIds, sourceRanges: [...spec.sourceRanges] });
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
