// The rule-based modes against each other and against eBPF, in one run:
// 1. Sync times at 100, 1k and 10k services (2 endpoints each, every 10th with a NodePort), inside a
//    throwaway netns: a full sync, a one-service change and the same change as a full sync
//    (iptables partial vs full, nftables incremental vs full repair against the listing, eBPF
//    map writes), and for nftables an agent restart's first sync and a periodic no-change sync.
//    The one-service change is timed from the event (tracker update and flush) to the applied
//    rules or maps.
// 2. Connection setup through a ClusterIP among 10, 1k and 10k services, from a lab pod to a pod on the
//    other node: iptables (the benchmark service last in KUBE-SERVICES, kube-proxy's worst
//    case), nftables (verdict maps) and the eBPF datapath, against the pod IP directly.
// The added time per connection over the direct path is the first packet's cost (the answers
// and later packets of a flow take conntrack's established path in every mode).
//   npm run bench:rules   (root; BENCH_QUICK=1: 100 and 1k for syncs, 10 and 1k for connections)
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EbpfProxyBackend } from '../control/backends/ebpf/proxy-backend.ts';
import { datapathObjectPath } from '../control/backends/ebpf/object-path.ts';
import { IptablesBackend, XTABLES_WAIT } from '../control/backends/iptables/apply.ts';
import { cleanupIptables, defaultRunner } from '../control/backends/iptables/cleanup.ts';
import { NftablesBackend, nftRunner } from '../control/backends/nftables/apply.ts';
import { TABLE as NFT_TABLE } from '../control/backends/nftables/compile.ts';
import { cleanupNftables } from '../control/backends/nftables/cleanup.ts';
import { nodeFacts } from '../control/model/node.ts';
import { ChangeTracker } from '../control/model/tracker.ts';
import { DEFAULT_MODEL_CONFIG, type ChangeSet } from '../control/model/types.ts';
import { service, slice } from '../test/cases/objects.ts';
import { config } from '../test/cases/semantics.ts';
import { programNode } from '../test/backends/ebpf-lab.ts';
import { run } from '../test/lab/exec.ts';
import { inNetns, Lab } from '../test/lab/lab.ts';
import { runPrefix } from '../test/lab/names.ts';
import { QUICK, sizes, writeReport } from './report.ts';

const LOAD = fileURLToPath(new URL('../test/lab/load.ts', import.meta.url));
const ROUNDS = QUICK ? 2 : 3;
const SECONDS = QUICK ? 2 : 3;
const octets = (i: number): string => `${(i >> 8) & 255}.${i & 255}`;

/** n services in namespace "load" plus, sorting last, zz/bench at 10.96.0.90 -> `benchEndpoint`. */
function fill(t: ChangeTracker, n: number, benchEndpoint?: { ip: string; node: string }): void {
  for (let i = 0; i < n; i++) {
    const nodePort = i % 10 === 0 ? 30000 + i / 10 : undefined;
    t.upsertService(service({ ns: 'load', name: `s${i}`, type: nodePort ? 'NodePort' : 'ClusterIP', clusterIPs: [`10.100.${octets(i)}`], ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort }] }));
    t.upsertSlice(slice({ ns: 'load', name: `s${i}-x`, service: `s${i}`, ports: [{ name: 'http', port: 8080 }], endpoints: [{ ip: `10.200.${octets(2 * i)}`, node: 'far' }, { ip: `10.200.${octets(2 * i + 1)}`, node: 'far' }] }));
  }
  if (benchEndpoint !== undefined) {
    t.upsertService(service({ ns: 'zz', name: 'bench', clusterIPs: ['10.96.0.90'], ports: [{ port: 80, targetPort: 8080 }] }));
    t.upsertSlice(slice({ ns: 'zz', name: 'bench-x', service: 'bench', ports: [{ port: 8080 }], endpoints: [benchEndpoint] }));
  }
}

/** The one-service change: s(n/2) swaps one endpoint. Returns the tracker's change set, the backends' input. */
function change(t: ChangeTracker, n: number, round: number): ChangeSet {
  const i = Math.floor(n / 2);
  t.upsertSlice(slice({ ns: 'load', name: `s${i}-x`, service: `s${i}`, ports: [{ name: 'http', port: 8080 }], endpoints: [{ ip: `10.200.${octets(2 * i)}`, node: 'far' }, { ip: `10.201.${octets(round)}`, node: 'far' }] }));
  return t.flush();
}

async function ms(f: () => Promise<unknown> | unknown): Promise<number> {
  const t0 = performance.now();
  await f();
  return +(performance.now() - t0).toFixed(1);
}

/**
 * The restore tool alone: `text` (what a first sync sent) written to a file and loaded from it
 * by `tool` (argv, the file appended) after `clean` emptied the netns of our rules.
 */
async function toolAlone(prefix: readonly string[], text: string, clean: () => Promise<unknown>, tool: readonly string[]): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-bench-rules-'));
  try {
    const file = join(dir, 'rules');
    writeFileSync(file, text);
    await clean();
    return await ms(() => run(prefix[0]!, [...prefix.slice(1), ...tool, file]));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function cluster(n: number): ChangeTracker {
  const t = new ChangeTracker({ ...DEFAULT_MODEL_CONFIG, families: [4], clusterCIDRs: ['10.244.0.0/16'], detectLocalMode: 'ClusterCIDR' }, nodeFacts('bench', { metadata: { name: 'bench' }, status: { addresses: [{ type: 'InternalIP', address: '10.254.0.11' }] } }));
  fill(t, n);
  t.flush();
  return t;
}

async function syncTimes(n: number): Promise<Array<Record<string, string | number>>> {
  const netns = `${runPrefix()}-bench`;
  await run('ip', ['netns', 'add', netns]);
  const prefix = inNetns(netns);
  const rows: Array<Record<string, string | number>> = [];
  try {
    let t = cluster(n);
    const ipt = new IptablesBackend({ families: [4], commandPrefix: prefix });
    const iptFull = await ms(() => ipt.sync(t.state(), true));
    // The tool alone on the same rules: the first sync's transaction, restored into a clean
    // netns from a file (the acceptance: a first sync within 1.5x of this, same run).
    const iptAlone = await toolAlone(prefix, ipt.sent.last()!.text, () => cleanupIptables(defaultRunner(prefix)), ['iptables-restore', ...XTABLES_WAIT, '--noflush']);
    const iptPartial = await ms(() => ipt.sync(t.state(), false, change(t, n, 1)));
    const iptFullAgain = await ms(() => ipt.sync(t.state(), true, change(t, n, 2)));
    const rules = (await run('nsenter', [...prefix.slice(1), 'iptables-save', '-t', 'nat'])).split('\n').filter((l) => l.startsWith('-A')).length;
    rows.push({ mode: 'iptables', services: n, rules, firstSyncMs: iptFull, toolAloneMs: iptAlone, firstSyncVsTool: +(iptFull / iptAlone).toFixed(2), oneChangeMs: iptPartial, oneChangeFullSyncMs: iptFullAgain });
    await cleanupIptables(defaultRunner(prefix));

    t = cluster(n);
    const nft = new NftablesBackend({ families: [4], commandPrefix: prefix });
    const nftFirst = await ms(() => nft.sync(t.state(), false));
    const nftAlone = await toolAlone(prefix, nft.sent.last()!.text, () => cleanupNftables(nftRunner(prefix)), ['nft', '-f']);
    await nft.sync(t.state(), true); // the table back, as the first sync left it
    const nftIncremental = await ms(() => nft.sync(t.state(), false, change(t, n, 1)));
    const bytes = nft.sent.last()!.text.length;
    // nft's own floor for any change at this size: one rule added to a new chain of the table
    // (nft 1.x loads every chain and set of the table into its cache for an `add rule`).
    const probeChain = `${NFT_TABLE} sy-bench-floor`;
    const nftFloor = await toolAlone(prefix, `add chain ip ${probeChain}\nadd rule ip ${probeChain} counter\n`, async () => undefined, ['nft', '-f']);
    await run(prefix[0]!, [...prefix.slice(1), 'nft', 'delete', 'chain', 'ip', NFT_TABLE, 'sy-bench-floor']);
    const nftFull = await ms(() => nft.sync(t.state(), true, change(t, n, 2)));
    // An agent restart: a new backend's first sync lists the table and rewrites nothing.
    const restarted = new NftablesBackend({ families: [4], commandPrefix: prefix });
    const nftRestart = await ms(() => restarted.sync(t.state(), false));
    const periodic = await ms(() => restarted.sync(t.state(), false));
    rows.push({ mode: 'nftables', services: n, firstSyncMs: nftFirst, toolAloneMs: nftAlone, firstSyncVsTool: +(nftFirst / nftAlone).toFixed(2), oneChangeMs: nftIncremental, oneRuleFloorMs: nftFloor, oneChangeFullSyncMs: nftFull, changeBytes: bytes, restartSyncMs: nftRestart, periodicSyncMs: periodic });
    await cleanupNftables(nftRunner(prefix));

    t = cluster(n);
    const pinDir = `/sys/fs/bpf/${netns}`;
    // The agent's own sync path (proxy-backend.ts): a full first sync, then the change set alone.
    const ebpf = new EbpfProxyBackend({ object: datapathObjectPath(), pinDir, podDevicePrefixes: [], externalDevices: [], conntrack: { min: 65536, maxPerCore: 0 }, log: () => undefined }, 0);
    try {
      const first = await ms(() => ebpf.sync(t.state(), t.flush(), true, true));
      const one = await ms(() => ebpf.sync(t.state(), change(t, n, 1), false, false));
      rows.push({ mode: 'ebpf', services: n, firstSyncMs: first, oneChangeMs: one });
    } finally {
      ebpf.close();
      rmSync(pinDir, { recursive: true, force: true });
    }
  } finally {
    await run('ip', ['netns', 'del', netns]);
  }
  return rows;
}

async function connectionSetup(n: number): Promise<Array<Record<string, string | number>>> {
  const lab = await Lab.create({ nodes: 2, podsPerNode: 4 });
  try {
    const server = lab.pod('n1p1');
    const n0 = lab.nodes[0]!;
    const prefix = inNetns(n0.netns);
    const tracker = new ChangeTracker(config, nodeFacts(n0.name, { metadata: { name: n0.name }, spec: { podCIDRs: [n0.podCidrV4] }, status: { addresses: [{ type: 'InternalIP', address: n0.ipv4 }] } }));
    fill(tracker, n, { ip: server.ipv4, node: 'n1' });
    tracker.flush();
    // One client pod per path: the server keeps TIME_WAIT for every closed connection, and the
    // same client tuple through two paths would measure those collisions.
    const rate = async (client: string, host: string, port: number): Promise<number> => {
      let best = 0;
      for (let i = 0; i < ROUNDS; i++) best = Math.max(best, (JSON.parse(await lab.exec(lab.pod(client).netns, process.execPath, [LOAD, JSON.stringify({ mode: 'connections', host, port, seconds: SECONDS })])) as { perSecond: number }).perSecond);
      return best;
    };
    const directBefore = await rate('n0p0', server.ipv4, 8080);
    await new IptablesBackend({ families: [4], commandPrefix: prefix }).sync(tracker.state(), true);
    const ipt = await rate('n0p1', '10.96.0.90', 80);
    await cleanupIptables(defaultRunner(prefix));
    await new NftablesBackend({ families: [4], commandPrefix: prefix }).sync(tracker.state(), true);
    const nft = await rate('n0p2', '10.96.0.90', 80);
    await cleanupNftables(nftRunner(prefix));
    // The direct path once more, with nothing programmed: the better of the two is the baseline
    // (a busy host slows a round, it never speeds one up).
    const direct = Math.max(directBefore, await rate('n0p0', server.ipv4, 8080));
    const programmed = programNode(lab, n0, (t) => fill(t, n, { ip: server.ipv4, node: 'n1' }));
    const ebpf = await rate('n0p3', '10.96.0.90', 80);
    programmed.datapath.close();
    const row = (mode: string, path: string, cps: number): Record<string, string | number> => ({ mode, path, services: n, connectionsPerSecond: Math.round(cps), usPerConnection: +(1e6 / cps).toFixed(1), addedUsPerConnection: +(1e6 / cps - 1e6 / direct).toFixed(1), vsDirect: +(cps / direct).toFixed(3) });
    return [row('direct', 'pod IP (baseline)', direct), row('iptables', 'ClusterIP, iptables', ipt), row('nftables', 'ClusterIP, nftables', nft), row('ebpf', 'ClusterIP, eBPF', ebpf)];
  } finally {
    await lab.teardown();
  }
}

// BENCH_RULES_SIZES=10000 BENCH_RULES_SETUP=0 narrows a run (the sync part at one size);
// BENCH_RULES_SETUP_SIZES the connection part.
const list = (env: string | undefined, fallback: number[]): number[] => (env === undefined || env === '' ? fallback : env.split(',').map(Number));
const syncSizes = list(process.env.BENCH_RULES_SIZES, sizes([100, 1000, 10_000], [100, 1000]));
const setupSizes = process.env.BENCH_RULES_SETUP === '0' ? [] : list(process.env.BENCH_RULES_SETUP_SIZES, QUICK ? [10, 1000] : [10, 1000, 10_000]);
const sync: Array<Record<string, string | number>> = [];
for (const n of syncSizes) sync.push(...(await syncTimes(n)));
console.table(sync);
const setup: Array<Record<string, string | number>> = [];
for (const n of setupSizes) setup.push(...(await connectionSetup(n)));
console.table(setup);
console.log(`written ${writeReport('rules', { syncSizes, setupSizes, sync, connectionSetup: setup, note: `sync: one netns, IPv4, 2 endpoints per service, every 10th with a NodePort; one-service change timed from the tracker update to the applied rules or maps; connection setup: sequential connect/read/close from a pod on n0 to a pod on n1, best of ${ROUNDS} rounds of ${SECONDS} s, one client pod per path, the direct path measured before and after the rule modes (the better is the baseline)` })}`);
