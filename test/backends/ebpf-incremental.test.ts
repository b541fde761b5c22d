// Incremental sync in eBPF mode: a random sequence of Service and EndpointSlice changes, applied
// one change set at a time, must leave exactly what a full compile of the final state gives:
// the compiled model (many random clusters, fast), and the map contents themselves (a few, with
// real maps: one datapath fed incrementally, one fresh datapath synced once from the end state).
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { u32 } from '../../control/bpf/codec.ts';
import { backend as backendCodec, frontendKey, frontendValue, revNat, slotKey, sourceRangeKey } from '../../control/bpf/layout.ts';
import { EbpfBackend, serviceMapSizes } from '../../control/backends/ebpf/backend.ts';
import { CompiledModel, compileDatapath, compilePort, emptyDelta, type BackendSpec, type FrontendSpec } from '../../control/backends/ebpf/compile.ts';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import type { ChangeSet, DesiredState } from '../../control/model/types.ts';
import { service, slice } from '../cases/objects.ts';
import { config, node } from '../cases/semantics.ts';
import { runPrefix } from '../lab/names.ts';
import { teardownNamesSync } from '../lab/sweep.ts';
import { datapathObject } from './ebpf-lab.ts';

const prefix = `${runPrefix()}-incr`;

/** A small deterministic PRNG (mulberry32): the same seed, the same cluster and changes. */
function rng(seed: number): { int: (n: number) => number; pick: <T>(xs: readonly T[]) => T; chance: (p: number) => boolean } {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return { int, pick: (xs) => xs[int(xs.length)]!, chance: (p) => next() < p };
}

const SERVICES = 10;
// Small pools, so that services collide on external and LB IPs and NodePorts.
const EXTERNAL_IPS = ['10.254.0.100', '10.254.0.101', '10.254.0.11'];
const LB_IPS = ['10.254.0.50', '10.254.0.51'];
const NODE_PORTS = [30001, 30002, 30003];

type Event = { kind: 'service' | 'slice'; obj: unknown } | { kind: 'delete-service' | 'delete-slice'; key: string };

function randomEvent(r: ReturnType<typeof rng>): Event {
  const i = r.int(SERVICES);
  const name = `s${i}`;
  const roll = r.int(10);
  if (roll === 0) return { kind: 'delete-service', key: `demo/${name}` };
  if (roll === 1) return { kind: 'delete-slice', key: `demo/${name}-${r.int(2)}` };
  if (roll <= 4) {
    const type = r.pick(['ClusterIP', 'NodePort', 'LoadBalancer'] as const);
    const ports = Array.from({ length: 1 + r.int(2) }, (_, p) => ({
      name: `p${p}`,
      port: 80 + p,
      protocol: r.chance(0.15) ? ('UDP' as const) : r.chance(0.05) ? ('SCTP' as const) : ('TCP' as const),
      targetPort: 8080 + p,
      nodePort: type === 'ClusterIP' ? undefined : r.pick(NODE_PORTS) + p * 10,
    }));
    const lb = type === 'LoadBalancer' ? [r.pick(LB_IPS)] : undefined;
    return {
      kind: 'service',
      obj: service({
        name,
        type,
        clusterIPs: r.chance(0.3) ? [`10.96.0.${i + 1}`, `fd00:96::${i + 1}`] : [`10.96.0.${i + 1}`],
        ports,
        externalIPs: r.chance(0.3) ? [r.pick(EXTERNAL_IPS)] : undefined,
        lbIPs: lb,
        sourceRanges: lb !== undefined && r.chance(0.3) ? [r.pick(['192.0.2.0/24', '10.254.0.0/24'])] : undefined,
        eTP: type !== 'ClusterIP' && r.chance(0.4) ? 'Local' : undefined,
        iTP: r.chance(0.2) ? 'Local' : 'Cluster',
        affinity: r.chance(0.2) ? 60 + r.int(3) : undefined,
        annotations: r.chance(0.1) ? { 'switchyard.io/lb-algorithm': 'maglev' } : undefined,
      }),
    };
  }
  const family = r.chance(0.2) ? 6 : 4;
  const endpoints = Array.from({ length: r.int(4) }, () => {
    const e = r.int(12);
    return {
      ip: family === 4 ? `10.244.${r.int(2)}.${e + 2}` : `fd00:10:244:${r.int(2)}::${e + 2}`,
      node: r.pick(['n0', 'n1']),
      ready: !r.chance(0.2),
      terminating: r.chance(0.15),
    };
  });
  return {
    kind: 'slice',
    obj: slice({ name: `${name}-${r.int(2)}`, service: name, family, ports: [{ name: 'p0', port: 8080 }, { name: 'p1', port: 8081, protocol: r.chance(0.2) ? 'UDP' : 'TCP' }], endpoints }),
  };
}

function feed(t: ChangeTracker, ev: Event): void {
  if ('obj' in ev) {
    if (ev.kind === 'service') t.upsertService(ev.obj);
    else t.upsertSlice(ev.obj);
  } else if (ev.kind === 'delete-service') t.deleteService(ev.key);
  else t.deleteSlice(ev.key);
}

function tracker(): ChangeTracker {
  return new ChangeTracker(config, nodeFacts('n0', node));
}

/** What EbpfBackend.syncChanges does to its model on an incremental sync. */
function applyChanges(model: CompiledModel, state: DesiredState, changes: ChangeSet, fe: Map<string, FrontendSpec>, be: Map<string, BackendSpec>): void {
  const delta = emptyDelta();
  for (const sp of changes.removed) model.set(sp.key, undefined, delta);
  for (const sp of changes.upserted) model.set(sp.key, compilePort(sp, state.families.get(sp.family)!, state.config), delta);
  model.resolve(delta);
  // The delta is what reaches the maps: replay it onto plain maps.
  for (const [k, v] of delta.frontends) (v === undefined ? fe.delete(k) : fe.set(k, v));
  for (const [k, v] of delta.backends) (v === undefined ? be.delete(k) : be.set(k, v));
}

describe('eBPF incremental sync', () => {
  after(() => teardownNamesSync(prefix));

  it('the compiled model and its deltas, after random changes, equal a full compile of the final state (300 clusters)', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const r = rng(seed);
      const t = tracker();
      for (let k = 0; k < 15; k++) feed(t, randomEvent(r));
      t.flush();
      const model = compileDatapath(t.state());
      const fe = new Map(model.frontends);
      const be = new Map(model.backends);
      for (let step = 0; step < 60; step++) {
        for (let k = 1 + r.int(3); k > 0; k--) feed(t, randomEvent(r));
        applyChanges(model, t.state(), t.flush(), fe, be);
      }
      const full = compileDatapath(t.state());
      assert.deepEqual(model.frontends, full.frontends, `seed ${seed}: model frontends`);
      assert.deepEqual(model.backends, full.backends, `seed ${seed}: model backends`);
      assert.deepEqual(fe, full.frontends, `seed ${seed}: frontends as the deltas wrote them`);
      assert.deepEqual(be, full.backends, `seed ${seed}: backends as the deltas wrote them`);
      assert.deepEqual(model.unsupported.map((u) => u.servicePort).sort(), full.unsupported.map((u) => u.servicePort).sort(), `seed ${seed}: unsupported`);
    }
  });

  it('the maps written one change set at a time hold what one full sync of the final state writes', async () => {
    const open = (name: string): EbpfBackend =>
      EbpfBackend.open({ object: datapathObject, pinDir: `/sys/fs/bpf/${prefix}-${name}`, podDevicePrefixes: [], externalDevices: [], conntrack: { min: 16384, maxPerCore: 0 }, log: () => undefined });
    for (const seed of [7, 8]) {
      const r = rng(seed);
      const t = tracker();
      for (let k = 0; k < 15; k++) feed(t, randomEvent(r));
      const incremental = open(`i${seed}`);
      const fresh = open(`f${seed}`);
      try {
        const first = await incremental.syncChanges(t.state(), t.flush(), true);
        assert.deepEqual(first.failed, []);
        let written = 0;
        for (let step = 0; step < 40; step++) {
          for (let k = 1 + r.int(3); k > 0; k--) feed(t, randomEvent(r));
          const report = await incremental.syncChanges(t.state(), t.flush(), false);
          assert.deepEqual(report.failed, [], `seed ${seed} step ${step}`);
          written += report.frontendsWritten + report.frontendsRemoved;
        }
        assert.ok(written > 0, 'the changes wrote something');
        const report = await fresh.syncChanges(t.state(), t.flush(), true);
        assert.deepEqual(report.failed, []);
        assert.deepEqual(mapContents(incremental), mapContents(fresh), `seed ${seed}`);
      } finally {
        incremental.close();
        fresh.close();
        teardownNamesSync(`${prefix}-i${seed}`);
        teardownNamesSync(`${prefix}-f${seed}`);
      }
    }
  });

  it('sy_revnat, sy_stats and sy_service_addrs follow sy_frontends past 65,536; pinned maps keep their size, said in the log', () => {
    const logged: string[] = [];
    const name = `${prefix}-sizes`;
    const o = { pinDir: `/sys/fs/bpf/${name}`, maxEntries: { sy_frontends: 100_000, sy_backends: 200_000 }, log: (_f: Record<string, unknown>, m: string) => void logged.push(m) };
    assert.deepEqual(serviceMapSizes(o), { sy_frontends: 100_000, sy_backends: 200_000, sy_revnat: 125_000, sy_stats: 100_001, sy_service_addrs: 100_000 });
    const b = EbpfBackend.open({ ...o, object: datapathObject, podDevicePrefixes: [], externalDevices: [], conntrack: { min: 16384, maxPerCore: 0 } });
    try {
      const size = (m: string): number => b.datapath.object.mapDescription(m).maxEntries;
      assert.deepEqual([size('sy_frontends'), size('sy_revnat'), size('sy_stats'), size('sy_backends'), size('sy_service_addrs')], [100_000, 125_000, 100_001, 200_000, 100_000]);
    } finally {
      b.close();
    }
    logged.length = 0;
    assert.equal(serviceMapSizes({ ...o, maxEntries: { sy_frontends: 200_000 } }).sy_frontends, 100_000, 'the pinned size stays');
    assert.ok(logged.some((m) => /sy_frontends keeps its pinned size 100000 \(configured 200000\)/.test(m)), logged.join('\n'));
    teardownNamesSync(name);
  });
});

/** The maps' contents with ids resolved to what they name (ids differ between the two agents). */
function mapContents(b: EbpfBackend): { frontends: Record<string, unknown>; backends: string[]; slots: number } {
  const o = b.datapath.object;
  const slots = new Map(o.map('sy_slots', slotKey, u32).entries().map(([k, v]) => [`${k.setId}|${k.slot}`, v]));
  const backends = new Map(o.map('sy_backends', u32, backendCodec).entries());
  const revnat = o.map('sy_revnat', u32, revNat);
  const ranges = o.map('sy_source_ranges', sourceRangeKey, { size: 1, align: 1, encodeInto: (v: number, buf: Buffer, off: number) => void buf.writeUInt8(v, off), decodeFrom: (buf: Buffer, off: number) => buf.readUInt8(off) }).entries();
  const maglev = o.map('sy_maglev', u32, u32);
  const named = (id: number): string => {
    const be = backends.get(id)!;
    return `${be.addr}|${be.port}|${be.proto}|${be.flags}`;
  };
  const frontends: Record<string, unknown> = {};
  for (const [k, v] of o.map('sy_frontends', frontendKey, frontendValue).entries()) {
    const set = Array.from({ length: v.count }, (_, i) => named(slots.get(`${v.setId}|${i + 1}`)!));
    frontends[`${k.addr}|${k.port}|${k.proto}|${k.scope}`] = {
      flags: v.flags,
      algorithm: v.algorithm,
      affinityTimeout: v.affinityTimeout,
      set,
      revNat: revnat.get(v.revNatId),
      ranges: ranges.filter(([rk]) => rk.revNatId === v.revNatId).map(([rk]) => `${rk.addr}/${rk.prefixlen - 32}`).sort(),
      maglev: maglev.get(v.setId) !== undefined,
    };
  }
  const live = [...backends.values()].filter((be) => be.family !== 0).map((be) => `${be.addr}|${be.port}|${be.proto}|${be.flags}`).sort();
  return { frontends, backends: live, slots: slots.size };
}
