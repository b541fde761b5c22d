// Incremental syncs in iptables and nftables mode, held against whole ones: a seeded stream of
// changes (services added and deleted, endpoints moved, emptied and refilled, types, traffic
// policies, source ranges and affinity switched) goes into one network namespace as partial
// syncs driven by the tracker's change sets; after every few changes a second namespace gets a
// full sync of the same state, and what the kernels hold must be the same (order-free where the
// kernel's order carries no meaning: shared chains' rules, map elements). And each partial sync
// compiles only the ports that changed.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { IptablesBackend } from '../../control/backends/iptables/apply.ts';
import { NftablesBackend } from '../../control/backends/nftables/apply.ts';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { DEFAULT_MODEL_CONFIG } from '../../control/model/types.ts';
import { service, slice } from '../cases/objects.ts';
import { run } from '../lab/exec.ts';
import { inNetns } from '../lab/lab.ts';
import { runPrefix } from '../lab/names.ts';

const incremental = `${runPrefix()}-incr`;
const reference = `${runPrefix()}-whole`;
const inNs = (netns: string, file: string, args: string[]): Promise<string> => run('nsenter', [`--net=/run/netns/${netns}`, '--', file, ...args]);

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function tracker(): ChangeTracker {
  return new ChangeTracker(
    { ...DEFAULT_MODEL_CONFIG, families: [4], clusterCIDRs: ['10.244.0.0/16'], detectLocalMode: 'ClusterCIDR' },
    nodeFacts('n0', { metadata: { name: 'n0' }, status: { addresses: [{ type: 'InternalIP', address: '10.254.0.11' }] } }),
  );
}

/** One random change to service i (of 12). */
function change(t: ChangeTracker, r: () => number, step: number): void {
  const i = Math.floor(r() * 12);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const what = r();
  if (what < 0.15) {
    t.deleteService(`demo/s${i}`);
    return;
  }
  if (what < 0.55) {
    const type = pick(['ClusterIP', 'NodePort', 'LoadBalancer'] as const);
    t.upsertService(
      service({
        ns: 'demo', name: `s${i}`, type, clusterIPs: [`10.96.1.${i + 1}`],
        externalIPs: r() < 0.2 ? [`192.0.2.${i + 1}`] : [],
        lbIPs: type === 'LoadBalancer' ? [`198.51.100.${i + 1}`] : [],
        sourceRanges: type === 'LoadBalancer' && r() < 0.5 ? ['203.0.113.0/25'] : [],
        eTP: pick(['Cluster', 'Local']), iTP: pick(['Cluster', 'Local']),
        affinity: r() < 0.2 ? 60 : undefined,
        // Two ports on some: they share the ClusterIP element of the cluster-ips set.
        ports: [{ name: 'a', port: 80, protocol: pick(['TCP', 'UDP']), nodePort: type === 'ClusterIP' ? undefined : 30100 + i }, ...(i % 3 === 0 ? [{ name: 'b', port: 81 }] : [])],
      }),
    );
    return;
  }
  const n = Math.floor(r() * 4);
  const endpoints = Array.from({ length: n }, (_, j) => ({ ip: `10.244.${j % 2}.${(step * 7 + j) % 250 + 2}`, node: pick(['n0', 'n1']), ready: r() < 0.85 }));
  t.upsertSlice(slice({ ns: 'demo', name: `s${i}-x`, service: `s${i}`, ports: [{ name: 'a', port: 8080 }, { name: 'b', port: 8081 }], endpoints }));
}

/** iptables-save of our chains: each chain's rules, shared chains sorted (their order means nothing). */
async function iptablesView(netns: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  let table = '';
  for (const line of (await inNs(netns, 'iptables-save', [])).split('\n')) {
    if (line.startsWith('*')) table = line.slice(1);
    else if (line.startsWith(':KUBE-')) out[`${table} ${line.slice(1).split(' ')[0]}`] ??= [];
    else if (line.startsWith('-A KUBE-')) (out[`${table} ${line.split(' ')[1]}`] ??= []).push(line);
  }
  for (const k of Object.keys(out)) if (!/ KUBE-(SVC|SVL|EXT|FW|SEP)-/.test(k)) out[k]!.sort();
  return out;
}

/** nft's listing of our table by object, map and set elements sorted. */
async function nftView(netns: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const text = await inNs(netns, 'nft', ['list', 'table', 'ip', 'kube-proxy']);
  for (const m of text.matchAll(/^\t(chain|set|map) (\S+) \{\n([\s\S]*?)^\t\}$/gm)) {
    const body = m[3]!.replace(/elements = \{([^}]*)\}/, (_, items: string) => `elements = { ${items.split(',').map((e) => e.trim()).sort().join(', ')} }`);
    out[`${m[1]} ${m[2]}`] = body.replace(/\s+/g, ' ');
  }
  return out;
}

describe('rule modes: incremental syncs end where a whole sync does', () => {
  before(async () => {
    await run('ip', ['netns', 'add', incremental]);
    await run('ip', ['netns', 'add', reference]);
  });
  after(async () => {
    await run('ip', ['netns', 'del', incremental]).catch(() => undefined);
    await run('ip', ['netns', 'del', reference]).catch(() => undefined);
  });

  for (const mode of ['iptables', 'nftables'] as const) {
    it(`${mode}: 60 random changes as partial syncs`, async () => {
      const make = (netns: string): IptablesBackend | NftablesBackend =>
        mode === 'iptables' ? new IptablesBackend({ families: [4], commandPrefix: inNetns(netns) }) : new NftablesBackend({ families: [4], commandPrefix: inNetns(netns) });
      const view = mode === 'iptables' ? iptablesView : nftView;
      const t = tracker();
      const r = prng(mode === 'iptables' ? 12 : 13);
      for (let step = 0; step < 12; step++) change(t, r, step);
      t.flush();
      const a = make(incremental);
      await a.sync(t.state(), true);
      for (let step = 0; step < 60; step++) {
        const changed = 1 + Math.floor(r() * 2);
        for (let k = 0; k < changed; k++) change(t, r, step);
        const changes = t.flush();
        const report = await a.sync(t.state(), false, changes);
        assert.equal(report.full, false, `step ${step}: a partial sync`);
        const compiled = report.families[0]!;
        const touched = 'rewritten' in compiled ? compiled.rewritten : compiled.servicePorts;
        assert.ok(touched <= changes.upserted.length + changes.removed.length, `step ${step}: ${touched} ports compiled for ${changes.upserted.length + changes.removed.length} changed`);
        if (step % 10 === 9) {
          // A fresh namespace each time: a whole sync into an empty kernel.
          await run('ip', ['netns', 'del', reference]);
          await run('ip', ['netns', 'add', reference]);
          await make(reference).sync(t.state(), true);
          assert.deepEqual(await view(incremental), await view(reference), `step ${step}: the kernel holds what a whole sync gives`);
        }
      }
      assert.equal('partialRestoreFailures' in a ? a.partialRestoreFailures : a.partialSyncFailures, 0, 'no partial sync failed over to a full one');
    });
  }
});
