// Renders bench/REPORT.md and its plots (bench/report/*.svg) from bench/results/*.json, and
// nothing else: no benchmark runs here, so the report can be rebuilt from committed results.
//   npm run bench:report
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Environment } from './report.ts';
import { barChart, COLORS, lineChart, type Series } from './svg.ts';

type Row = Record<string, number | string>;

/** One colour per proxy mode in every plot. */
const MODE_COLORS: Record<string, string> = { iptables: '#ff7f0e', nftables: '#9467bd', ebpf: '#2ca02c', direct: '#7f7f7f' };
const modeColor = (m: string): string | undefined => MODE_COLORS[m];

/** One results file; a benchmark that could not run has `error` instead of figures. */
export interface Result {
  name: string;
  at?: string;
  environment?: Environment & { seconds?: number };
  error?: string;
  [key: string]: unknown;
}

export interface RenderOptions {
  resultsDir: string;
  /** Where the SVGs go (bench/report). */
  plotsDir: string;
  /** The Markdown file (bench/REPORT.md); plots are linked relative to it. */
  reportPath: string;
}

/** The order of the report; any other results file is listed at the end. */
const SECTIONS = ['datapath', 'rules', 'rss', 'agent', 'sync', 'soak', 'lab', 'paths', 'snat', 'decode', 'model'] as const;
const COMMANDS: Record<string, string> = {
  datapath: 'npm run bench:datapath',
  rules: 'npm run bench:rules',
  rss: 'npm run bench:rss',
  lab: 'npm run bench:lab',
  paths: 'npm run bench:paths',
  agent: 'npm run bench:agent',
  snat: 'npm run bench:snat',
  decode: 'npm run bench:decode',
  model: 'npm run bench:model',
};

export function loadResults(dir: string): Map<string, Result> {
  const out = new Map<string, Result>();
  if (!existsSync(dir)) return out;
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
    const r = JSON.parse(readFileSync(join(dir, f), 'utf8')) as Result;
    out.set(r.name ?? basename(f, '.json'), r);
  }
  return out;
}

const rowsOf = (r: Result | undefined, key = 'rows'): Row[] => (Array.isArray(r?.[key]) ? (r[key] as Row[]) : []);
const num = (v: unknown): number => (typeof v === 'number' ? v : Number.NaN);

export function where(r: Result | undefined): string {
  const e = r?.environment;
  if (e === undefined) return r?.at !== undefined ? `measured ${r.at.slice(0, 16).replace('T', ' ')} UTC` : 'environment not recorded';
  return `${e.machine} · Linux ${e.kernel} · ${e.date.slice(0, 16).replace('T', ' ')} UTC · Node ${e.node}${e.quick ? ' · BENCH_QUICK' : ''}`;
}

function table(rows: Row[], columns: Array<[string, string]>): string {
  if (rows.length === 0) return '_no rows_\n';
  const cell = (v: unknown): string => (v === undefined || v === null || (typeof v === 'number' && !Number.isFinite(v)) ? '–' : String(v));
  return [`| ${columns.map((c) => c[1]).join(' | ')} |`, `|${columns.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${columns.map((c) => cell(r[c[0]])).join(' | ')} |`)].join('\n') + '\n';
}

function uniq<T>(xs: T[]): T[] {
  return [...new Set(xs)];
}

class Report {
  readonly md: string[] = [];
  readonly plots = new Map<string, string>();
  readonly o: RenderOptions;
  constructor(o: RenderOptions) {
    this.o = o;
  }

  plot(name: string, alt: string, svg: string): void {
    this.plots.set(`${name}.svg`, svg);
    const rel = relative(join(this.o.reportPath, '..'), join(this.o.plotsDir, `${name}.svg`)).split('\\').join('/');
    this.md.push(`![${alt}](${rel})\n`);
  }
}

function missing(rep: Report, name: string, r: Result | undefined): boolean {
  if (r === undefined) {
    rep.md.push(`_Not run: there is no \`bench/results/${name}.json\`. Run \`${COMMANDS[name] ?? `npm run bench:${name}`}\`._\n`);
    return true;
  }
  if (r.error !== undefined) {
    rep.md.push(`_Could not run on this machine (${where(r)}):_\n\n\`\`\`\n${r.error.trim()}\n\`\`\`\n`);
    return true;
  }
  return false;
}

function datapath(rep: Report, dp: Result | undefined, rules: Result | undefined): void {
  rep.md.push('## Per-packet cost against the number of services\n');
  if (missing(rep, 'datapath', dp)) return;
  const rows = rowsOf(dp);
  const builds = uniq(rows.map((r) => String(r.build)));
  const series: Series[] = [];
  builds.forEach((b, i) => {
    const of = rows.filter((r) => r.build === b);
    const color = COLORS[i % COLORS.length]!;
    series.push({ name: `eBPF ${b}: new flow`, points: of.map((r) => [num(r.services), num(r.newFlowNs)]), color });
    series.push({ name: `eBPF ${b}: established`, points: of.map((r) => [num(r.services), num(r.establishedNs)]), dashed: true, color });
  });
  const setup = rowsOf(rules, 'connectionSetup');
  ['iptables', 'nftables'].forEach((mode, i) => {
    const of = setup.filter((r) => r.mode === mode);
    if (of.length > 0) series.push({ name: `${mode}: first packet*`, points: of.map((r) => [num(r.services), num(r.addedUsPerConnection) * 1000]), color: modeColor(mode) ?? COLORS[(builds.length + i) % COLORS.length]! });
  });
  const sub = setup.length > 0 ? `${where(dp)}; rule modes ${rules?.environment?.date.slice(11, 16) ?? '?'} UTC` : where(dp);
  rep.plot('per-packet', 'per-packet cost against services', lineChart({
    title: 'Per-packet cost vs services',
    subtitle: sub,
    xLabel: 'services (10 backends each for eBPF, 2 for the rule modes; log scale)',
    yLabel: 'ns per packet (log scale)',
    xLog: true,
    yLog: true,
    series,
    note: '*iptables/nftables: added time per connection over the pod directly (its first packet), from bench:rules; points <= 0 are left out',
  }));
  rep.md.push(`eBPF: BPF_PROG_TEST_RUN, the kernel's own timing of ${'`'}sy_from_pod${'`'} on one IPv4 TCP packet, ns above a program that only restores the headers (an empty tc program costs ${dp!.floorNs ?? '?'} ns per run here; one helper call ${dp!.helperCallNs ?? '?'} ns). Builds: ${builds.map((b) => `\`${b}\``).join(', ')} (each build this kernel loads). A new flow is the frontend lookup, backend selection, two conntrack inserts and DNAT, to a service drawn at random (at 100k services its entries are out of the caches), with room in the table of handshakes (as completed handshakes leave it; "SYN flood": the table full, every insert evicting); established is one conntrack hit and DNAT; reply the reverse NAT. The rule modes have no such harness: their first-packet cost is the time a connection through the ClusterIP takes beyond one straight to the pod, measured with real connections (see the next section); later packets of a flow take conntrack's established path in those modes.\n`);
  rep.md.push(table(rows, [['build', 'build'], ['services', 'services'], ['backends', 'backends'], ['newFlowNs', 'new flow ns'], ['newFlowFloodNs', 'new flow, SYN flood ns'], ['establishedNs', 'established ns'], ['replyNs', 'reply ns'], ['xdpExternalNs', 'XDP external ns'], ['tcExternalNs', 'tc external ns'], ['syncMs', 'map sync ms']]));
  const flat = dp!.flatness as Record<string, unknown> | undefined;
  if (flat !== undefined) {
    const of = String(flat.of ?? 'largest / smallest');
    const lines = Object.entries(flat).filter(([k]) => k !== 'of').map(([b, v]) => {
      const f = v as Record<string, number>;
      return `- \`${b}\`: new flow ${f.newFlow}x, established ${f.established}x, reply ${f.reply}x`;
    });
    rep.md.push(`Flatness, ${of} (same run):\n\n${lines.join('\n')}\n`);
  }
}

function connectionSetup(rep: Report, rules: Result | undefined): void {
  rep.md.push('## Connection setup through a ClusterIP against the number of services\n');
  if (missing(rep, 'rules', rules)) return;
  const rows = rowsOf(rules, 'connectionSetup');
  if (rows.length === 0) {
    rep.md.push('_Not measured in this run (BENCH_RULES_SETUP=0)._\n');
    return;
  }
  const modes = uniq(rows.map((r) => String(r.mode)));
  rep.plot('connection-setup', 'time per connection against services', lineChart({
    title: 'Time per connection vs services',
    subtitle: where(rules),
    xLabel: 'services (log scale)',
    yLabel: 'µs per connection (connect, read, close)',
    xLog: true,
    series: modes.map((m) => ({ name: m === 'direct' ? 'pod IP directly' : `ClusterIP, ${m}`, points: rows.filter((r) => r.mode === m).map((r) => [num(r.services), num(r.usPerConnection)]), dashed: m === 'direct', color: modeColor(m) })),
    note: 'sequential connections from a pod on n0 to a pod on n1; best round of each path',
  }));
  rep.md.push(`${String(rules!.note ?? '')}. The benchmark service sorts last among the services, so in iptables mode its rule is the last one KUBE-SERVICES tries (kube-proxy's worst case); nftables finds it in a verdict map, eBPF in a hash map (and at connect() with the socket programs).\n`);
  const direct = rows.filter((r) => r.mode === 'direct').map((r) => num(r.usPerConnection)).filter(Number.isFinite);
  if (direct.length > 1) {
    const lo = Math.min(...direct);
    const hi = Math.max(...direct);
    rep.md.push(`The direct path itself took ${lo} to ${hi} µs per connection across the sizes of this run (each size is its own lab, minutes apart, on a shared host): an added time well under that spread (${+(hi - lo).toFixed(1)} µs) is within the noise, and a negative one means the ClusterIP rounds happened to run in a quieter moment than the direct ones.\n`);
  }
  rep.md.push(table(rows, [['services', 'services'], ['path', 'path'], ['connectionsPerSecond', 'connections/s'], ['usPerConnection', 'µs per connection'], ['addedUsPerConnection', 'added µs'], ['vsDirect', 'rate vs direct']]));
}

function syncs(rep: Report, rules: Result | undefined): void {
  rep.md.push('## Sync time and one-change latency against the number of services\n');
  if (missing(rep, 'rules', rules)) return;
  const rows = rowsOf(rules, 'sync');
  const modes = uniq(rows.map((r) => String(r.mode)));
  const pick = (k: string): Series[] => modes.map((m) => ({ name: m, points: rows.filter((r) => r.mode === m).map((r) => [num(r.services), num(r[k])]), color: modeColor(m) }));
  rep.plot('sync', 'full sync time against services', lineChart({
    title: 'First (full) sync vs services',
    subtitle: where(rules),
    xLabel: 'services (2 endpoints each, every 10th a NodePort; log scale)',
    yLabel: 'ms (log scale)',
    xLog: true,
    yLog: true,
    series: pick('firstSyncMs'),
  }));
  rep.plot('one-change', 'one-service change latency against services', lineChart({
    title: 'One-service change: event to applied vs services',
    subtitle: where(rules),
    xLabel: 'services (log scale)',
    yLabel: 'ms (log scale)',
    xLog: true,
    yLog: true,
    series: [...pick('oneChangeMs'), ...modes.filter((m) => rows.some((r) => r.mode === m && r.oneChangeFullSyncMs !== undefined)).map((m) => ({ name: `${m}, as a full sync`, points: rows.filter((r) => r.mode === m).map((r) => [num(r.services), num(r.oneChangeFullSyncMs)] as [number, number]), dashed: true, color: modeColor(m) }))],
    note: 'from the tracker update to the rules or maps applied; iptables partial / nftables incremental / eBPF map writes',
  }));
  rep.md.push('Timed per mode in one throwaway netns, one mode after the other. The one-service change runs from the tracker update to the rules or maps in place: iptables a partial iptables-restore, nftables an incremental transaction, eBPF compiling the model into map contents (`compileDatapath`, the whole model) and writing what differs. "As a full sync" is the same change written the way a periodic full sync writes it.\n');
  rep.md.push(table(rows, [['mode', 'mode'], ['services', 'services'], ['rules', 'iptables rules'], ['firstSyncMs', 'first sync ms'], ['toolAloneMs', 'the tool alone, same rules, ms'], ['firstSyncVsTool', 'first sync / tool alone'], ['oneChangeMs', 'one change ms'], ['oneRuleFloorMs', "nft's floor for a change ms"], ['oneChangeFullSyncMs', 'same change, full sync ms'], ['changeBytes', 'nft change bytes'], ['restartSyncMs', 'restart sync ms'], ['periodicSyncMs', 'periodic no-change ms']]));
}

function rss(rep: Report, r: Result | undefined): void {
  rep.md.push('## Agent memory against the number of services\n');
  if (missing(rep, 'rss', r)) return;
  const rows = rowsOf(r);
  const modes = uniq(rows.map((x) => String(x.mode)));
  rep.plot('rss', 'agent RSS against services', lineChart({
    title: 'Agent RSS vs services',
    subtitle: where(r),
    xLabel: 'services (log scale)',
    yLabel: 'MiB',
    xLog: true,
    series: [
      ...modes.map((m) => ({ name: `${m}, after first sync`, points: rows.filter((x) => x.mode === m).map((x) => [num(x.services), num(x.rssSettledMiB)] as [number, number]), color: modeColor(m) })),
      ...modes.map((m) => ({ name: `${m}, peak`, points: rows.filter((x) => x.mode === m).map((x) => [num(x.services), num(x.peakMiB)] as [number, number]), dashed: true, color: modeColor(m) })),
    ],
    note: 'VmRSS of the agent process 2 s after its first sync, and VmHWM',
  }));
  rep.md.push(`${String(r!.note ?? '')}\n`);
  rep.md.push(table(rows, [['mode', 'mode'], ['services', 'services'], ['rssMiB', 'RSS at sync MiB'], ['rssSettledMiB', 'RSS 2 s later MiB'], ['peakMiB', 'peak MiB'], ['firstSyncMs', 'first sync ms'], ['startToSyncedMs', 'start to synced ms']]));
  const failures = rowsOf(r, 'failures');
  if (failures.length > 0) rep.md.push(`Did not complete:\n\n${table(failures, [['mode', 'mode'], ['services', 'services'], ['error', 'why']])}`);
}

function lab(rep: Report, r: Result | undefined): void {
  rep.md.push('## Connection rate and bulk throughput per mode against the pod directly\n');
  if (missing(rep, 'lab', r)) return;
  const rows = rowsOf(r, 'modes');
  rep.plot('lab', 'ClusterIP against the pod directly, per mode', barChart({
    title: 'ClusterIP / pod directly, per mode',
    subtitle: where(r),
    yLabel: 'ratio (median of paired rounds)',
    categories: rows.map((x) => String(x.mode)),
    series: [
      { name: 'connection rate', values: rows.map((x) => num(x.connectionsRatio)) },
      { name: 'bulk throughput', values: rows.map((x) => num(x.throughputRatio)) },
      ...(rows.some((x) => x.clusterIpConnectionsVsUnproxied !== undefined) ? [
        { name: 'conn. vs unproxied', values: rows.map((x) => num(x.clusterIpConnectionsVsUnproxied)) },
        { name: 'bulk vs unproxied', values: rows.map((x) => num(x.clusterIpThroughputVsUnproxied)) },
      ] : []),
    ],
    reference: { value: 1, label: 'pod directly = 1' },
    note: 'paired: against the direct rounds with that mode in place; unproxied: best ClusterIP round / best direct round with nothing programmed',
  }));
  rep.md.push(`${String(r!.note ?? '')}\n`);
  const u = r!.unproxied as Record<string, number> | undefined;
  if (u !== undefined) rep.md.push(`Nothing programmed, pod directly: ${u.connectionsPerSecond} connections/s, ${u.gbitPerSecond} Gbit/s.\n`);
  rep.md.push(table(rows, [['mode', 'mode'], ['directConnectionsPerSecond', 'direct conn/s'], ['clusterIpConnectionsPerSecond', 'ClusterIP conn/s'], ['connectionsRatio', 'conn ratio'], ['directGbitPerSecond', 'direct Gbit/s'], ['clusterIpGbitPerSecond', 'ClusterIP Gbit/s'], ['throughputRatio', 'throughput ratio'], ['clusterIpConnectionsVsUnproxied', 'conn vs unproxied'], ['clusterIpThroughputVsUnproxied', 'throughput vs unproxied']]));
}

function snat(rep: Report, r: Result | undefined): void {
  rep.md.push('## NodePort with SNAT against the pod directly (eBPF)\n');
  if (missing(rep, 'snat', r)) return;
  const rows = rowsOf(r);
  const ratios = (r!.ratios ?? {}) as Record<string, number>;
  rep.plot('snat', 'NodePort SNAT against the pod directly', barChart({
    title: 'NodePort (eTP Cluster, SNAT) / pod directly',
    subtitle: where(r),
    yLabel: 'ratio (median of paired rounds)',
    categories: ['connection rate', 'bulk throughput'],
    series: [{ name: 'eBPF NodePort', values: [num(ratios.connectionsMedianOfPairs), num(ratios.throughputMedianOfPairs)] }],
    reference: { value: 1, label: 'pod directly = 1' },
  }));
  rep.md.push(`${String(r!.note ?? '')}\n`);
  rep.md.push(table(rows, [['path', 'path'], ['connectionsPerSecond', 'connections/s'], ['gbitPerSecond', 'Gbit/s'], ['failures', 'failed connections']]));
}

function paths(rep: Report, r: Result | undefined): void {
  rep.md.push('## Bulk TCP through a ClusterIP, a NodePort with SNAT and a hairpin (eBPF, TSO/GSO/GRO on)\n');
  if (missing(rep, 'paths', r)) return;
  const ratios = (r!.ratios ?? {}) as Record<string, number>;
  rep.plot('paths', 'bulk TCP per path against the pod directly', barChart({
    title: 'bulk throughput / the same transfer to the pod directly',
    subtitle: where(r),
    yLabel: 'ratio (median of paired rounds)',
    categories: ['ClusterIP', 'NodePort SNAT', 'hairpin / own pod IP', 'hairpin / own pod IP at pod MTU', 'hairpin / same-node pod'],
    series: [{ name: `eBPF, xdpMode ${String(r!.xdpMode ?? 'auto')}`, values: [num(ratios.throughputMedianOfPairs), num(ratios.nodePortSnatThroughputMedianOfPairs), num(ratios.hairpinThroughputMedianOfPairs), num(ratios.hairpinVsOwnPodIpAtPodMtuMedianOfPairs), num(ratios.hairpinVsSameNodePodMedianOfPairs)] }],
    reference: { value: 1, label: 'pod directly = 1' },
  }));
  rep.md.push(`${String(r!.note ?? '')}\n`);
  rep.md.push(table(rowsOf(r), [['path', 'path'], ['connectionsPerSecond', 'connections/s'], ['gbitPerSecond', 'Gbit/s'], ['ratioMedianOfPairs', 'ratio (median of pairs)']]));
}

function agent(rep: Report, r: Result | undefined): void {
  rep.md.push('## The whole agent against the API server: first sync, memory, programming latency under churn\n');
  if (missing(rep, 'agent', r)) return;
  rep.md.push(`${String(r!.note ?? '')}; churn ${JSON.stringify(r!.churn ?? {})}. Measured ${where(r)}.\n`);
  rep.md.push(table(rowsOf(r), [['mode', 'mode'], ['services', 'services'], ['firstSyncS', 'first sync s'], ['afterFirstSyncRssMiB', 'RSS after first sync MiB'], ['peakRssMiB', 'peak RSS MiB'], ['programmingP50ms', 'programming p50 ms'], ['programmingP99ms', 'p99 ms'], ['failedProbes', 'failed probes'], ['probes', 'probes'], ['eventLoopLagP99ms', 'loop lag p99 ms'], ['eventLoopLagMaxMs', 'max ms'], ['sigtermExitMs', 'SIGTERM exit ms']]));
}

function incrementalSync(rep: Report, r: Result | undefined): void {
  rep.md.push('## The eBPF backend\'s sync path: one change, first sync and resync with real maps\n');
  if (missing(rep, 'sync', r)) return;
  rep.md.push(`${String(r!.note ?? '')}. Measured ${where(r)}.\n`);
  rep.md.push(table(rowsOf(r), [['services', 'services'], ['events', 'changes'], ['firstSyncMs', 'first sync ms'], ['firstSyncMaxTurnMs', 'its longest turn ms'], ['oneChangeP50Ms', 'one change p50 ms'], ['oneChangeP99Ms', 'p99 ms'], ['oneChangeMaxMs', 'max ms'], ['resyncMs', 'resync ms'], ['resyncMaxTurnMs', 'its longest turn ms']]));
}

function soak(rep: Report, r: Result | undefined): void {
  rep.md.push('## Soak: a million endpoint changes with flows\n');
  if (missing(rep, 'soak', r)) return;
  const samples = (r!.samples ?? []) as Row[];
  rep.plot('soak', 'RSS and heap over a million endpoint changes', lineChart({
    title: `RSS and heap over ${String(r!.changes)} endpoint changes at ${String(r!.services)} services`,
    subtitle: where(r),
    xLabel: 'endpoint changes',
    yLabel: 'MiB',
    series: [
      { name: 'RSS', points: samples.map((x) => [num(x.changes), num(x.rssMiB)] as [number, number]) },
      { name: 'heap used', points: samples.map((x) => [num(x.changes), num(x.heapUsedMiB)] as [number, number]) },
    ],
  }));
  rep.md.push(`${String(r!.note ?? '')}. Verdict: ${JSON.stringify(r!.verdict ?? {})}.\n`);
  rep.md.push(table(samples, [['changes', 'changes'], ['seconds', 's'], ['rssMiB', 'RSS MiB'], ['heapUsedMiB', 'heap MiB'], ['fds', 'fds'], ['ct', 'sy_ct'], ['ctAny', 'sy_ct_any'], ['ctSyn', 'sy_ct_syn'], ['affinity', 'sy_affinity'], ['backends', 'backends'], ['flows', 'flows sent']]));
}

function decode(rep: Report, r: Result | undefined): void {
  rep.md.push('## Protobuf against JSON: watch-event decode\n');
  if (missing(rep, 'decode', r)) return;
  const rows = rowsOf(r);
  const cats = rows.map((x) => `${x.endpoints} endpoint${x.endpoints === 1 ? '' : 's'}`);
  rep.plot('decode', 'protobuf against JSON decode', barChart({
    title: 'EndpointSlice watch events decoded per second',
    subtitle: where(r),
    yLabel: 'events/s (log scale)',
    categories: cats,
    yLog: true,
    series: [
      { name: 'protobuf', values: rows.map((x) => num(x.protobufEventsPerSec)) },
      { name: 'JSON', values: rows.map((x) => num(x.jsonEventsPerSec)) },
    ],
  }));
  rep.md.push(table(rows, [['endpoints', 'endpoints'], ['protobufBytes', 'protobuf bytes'], ['jsonBytes', 'JSON bytes'], ['bytesRatio', 'bytes ratio'], ['protobufEventsPerSec', 'protobuf events/s'], ['jsonEventsPerSec', 'JSON events/s'], ['speedRatio', 'speed ratio']]));
}

function model(rep: Report, r: Result | undefined): void {
  rep.md.push('## Model: build time, heap and per-event cost\n');
  if (missing(rep, 'model', r)) return;
  rep.md.push(`Measured on ${where(r)}. Per-event cost at the largest / smallest size: ${String(r!.perEventRatio100kTo10k ?? r!.perEventRatio ?? '–')}x.\n`);
  rep.md.push(table(rowsOf(r), [['services', 'services'], ['endpointsPerService', 'endpoints each'], ['buildMs', 'build ms'], ['heapMB', 'heap MiB'], ['heapBytesPerService', 'heap bytes per service'], ['perEventUs', 'µs per event']]));
}

function environments(results: Map<string, Result>): string {
  const order = (n: string): number => ((SECTIONS as readonly string[]).indexOf(n) + SECTIONS.length + 1) % (SECTIONS.length + 1);
  const rows: Row[] = [...results.values()].sort((a, b) => order(a.name) - order(b.name) || (a.name < b.name ? -1 : 1)).map((r) => ({
    name: r.name,
    date: r.environment?.date.slice(0, 19).replace('T', ' ') ?? r.at ?? '–',
    machine: r.environment?.machine ?? '–',
    kernel: r.environment?.kernel ?? '–',
    node: r.environment?.node ?? String(r.node ?? '–'),
    quick: r.environment === undefined ? '–' : r.environment.quick ? 'yes' : 'no',
    load: r.environment?.loadAverage ?? '–',
    seconds: r.environment?.seconds ?? '–',
    status: r.error !== undefined ? 'could not run' : 'ok',
  }));
  return table(rows, [['name', 'benchmark'], ['date', 'date (UTC)'], ['machine', 'machine'], ['kernel', 'kernel'], ['node', 'Node'], ['quick', 'BENCH_QUICK'], ['load', 'load at start'], ['seconds', 'took s'], ['status', 'status']]);
}

/** Which sizes and rounds each benchmark ran, from its results. */
function sizesRun(results: Map<string, Result>): string {
  const list = (xs: unknown[]): string => uniq(xs.map(Number)).sort((a, b) => a - b).join(', ');
  const lines: string[] = [];
  const ok = (n: string): Result | undefined => (results.get(n)?.error === undefined ? results.get(n) : undefined);
  const dp = ok('datapath');
  if (dp !== undefined) lines.push(`- datapath: ${list(rowsOf(dp).map((r) => r.services))} services, 10 backends each; builds ${uniq(rowsOf(dp).map((r) => String(r.build))).join(', ')}`);
  const rules = ok('rules');
  if (rules !== undefined) lines.push(`- rules: syncs at ${list(rowsOf(rules, 'sync').map((r) => r.services))} services; connection setup at ${list(rowsOf(rules, 'connectionSetup').map((r) => r.services)) || 'none'} services`);
  const rss = ok('rss');
  if (rss !== undefined) lines.push(`- rss: ${list(rowsOf(rss).map((r) => r.services))} services, modes ${uniq(rowsOf(rss).map((r) => String(r.mode))).join(', ')}`);
  const lab = ok('lab');
  if (lab !== undefined) lines.push(`- lab: ${String(lab.rounds ?? '?')} paired rounds per mode (${String(lab.seconds ?? '?')} s of connections, ${Number(lab.bulkBytes ?? 0) / 2 ** 20} MiB bulk), modes ${rowsOf(lab, 'modes').map((r) => String(r.mode)).join(', ')}`);
  const decode = ok('decode');
  if (decode !== undefined) lines.push(`- decode: EndpointSlices of ${list(rowsOf(decode).map((r) => r.endpoints))} endpoints`);
  const model = ok('model');
  if (model !== undefined) lines.push(`- model: ${list(rowsOf(model).map((r) => r.services))} services`);
  return lines.length === 0 ? '' : `Sizes run:\n\n${lines.join('\n')}\n`;
}

/** Writes the report and its plots; returns the paths written. */
export function render(o: RenderOptions): string[] {
  const results = loadResults(o.resultsDir);
  const rep = new Report(o);
  rep.md.push(
    '# Switchyard benchmark report\n',
    '<!-- Generated by `npm run bench:report` (bench/render.ts) from bench/results/*.json; edit those or the renderer, not this file. -->\n',
    '`npm run bench` runs every benchmark in sequence (bench/run.ts), writes `bench/results/<name>.json` and renders this page and `bench/report/*.svg`; `BENCH_QUICK=1 npm run bench` runs the smaller sizes and fewer rounds; `npm run bench:report` only renders. Every ratio below is between figures measured in the same run of one benchmark; figures from different benchmarks (rows of different tables) were measured at different times and are not ratios of each other.\n',
    'The machine is shared: other work (tests of other changes) ran beside these benchmarks, so absolute figures are noisier than on a quiet host, and the load average at each start is recorded below. The rounds of a comparison alternate or follow each other closely so that the load weighs on both sides alike.\n',
    environments(results),
    sizesRun(results),
  );
  datapath(rep, results.get('datapath'), results.get('rules'));
  connectionSetup(rep, results.get('rules'));
  syncs(rep, results.get('rules'));
  rss(rep, results.get('rss'));
  agent(rep, results.get('agent'));
  incrementalSync(rep, results.get('sync'));
  soak(rep, results.get('soak'));
  lab(rep, results.get('lab'));
  paths(rep, results.get('paths'));
  snat(rep, results.get('snat'));
  decode(rep, results.get('decode'));
  model(rep, results.get('model'));
  const others = [...results.keys()].filter((k) => !(SECTIONS as readonly string[]).includes(k));
  if (others.length > 0) rep.md.push(`Other results present but not plotted: ${others.map((k) => `\`${k}.json\``).join(', ')}.\n`);
  mkdirSync(o.plotsDir, { recursive: true });
  // Plots of sections no longer rendered go away with them.
  for (const f of readdirSync(o.plotsDir)) if (f.endsWith('.svg') && !rep.plots.has(f)) rmSync(join(o.plotsDir, f));
  const written: string[] = [];
  for (const [f, svg] of rep.plots) {
    writeFileSync(join(o.plotsDir, f), svg);
    written.push(join(o.plotsDir, f));
  }
  writeFileSync(o.reportPath, rep.md.join('\n'));
  written.push(o.reportPath);
  return written;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));
  const written = render({ resultsDir: here('./results/'), plotsDir: here('./report/'), reportPath: here('./REPORT.md') });
  console.log(`written ${written.join(', ')}`);
}
