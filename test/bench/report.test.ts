// The benchmark report renders from a results directory alone: a small fixture set of results
// gives well-formed SVGs that carry every series and say where the figures were measured, and a
// Markdown page linking them; a benchmark that could not run is reported with its reason.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { render } from '../../bench/render.ts';
import { barChart, lineChart } from '../../bench/svg.ts';

const environment = { machine: 'Fixture CPU, 2 CPUs, 4 GiB', cpus: 2, memoryGiB: 4, kernel: '6.1.0-fixture', date: '2026-01-02T03:04:05.000Z', node: 'v24.0.0', quick: true, loadAverage: 0.5, seconds: 12 };
const SUBTITLE = /Fixture CPU, 2 CPUs, 4 GiB · Linux 6\.1\.0-fixture · 2026-01-02 03:04 UTC · Node v24\.0\.0 · BENCH_QUICK/;

const sizes = [10, 1000, 10_000];
const fixtures: Record<string, Record<string, unknown>> = {
  datapath: {
    floorNs: 28,
    helperCallNs: 13.8,
    rows: ['kern-ctx', 'portable'].flatMap((build, b) => sizes.map((services, i) => ({ build, services, backends: services * 10, newFlowNs: 1000 + 300 * i + 100 * b, establishedNs: 60 + 40 * b, replyNs: 65, xdpExternalNs: 95, tcExternalNs: 70, syncMs: services / 10 }))),
    flatness: { of: '10000 / 10 services', 'kern-ctx': { newFlow: 1.6, established: 1, reply: 1 }, portable: { newFlow: 1.55, established: 1, reply: 1 } },
  },
  rules: {
    note: 'fixture note',
    sync: ['iptables', 'nftables', 'ebpf'].flatMap((mode, m) => [100, 1000].map((services) => ({ mode, services, firstSyncMs: services * (3 - m), oneChangeMs: 5 * (3 - m), ...(mode === 'ebpf' ? {} : { oneChangeFullSyncMs: services }) }))),
    // nftables at 10 services came out faster than direct: on a log axis that point is left out.
    connectionSetup: sizes.flatMap((services) => [
      { mode: 'direct', path: 'pod IP (baseline)', services, usPerConnection: 100, addedUsPerConnection: 0 },
      { mode: 'iptables', path: 'ClusterIP, iptables', services, usPerConnection: 100 + services / 50, addedUsPerConnection: services / 50 },
      { mode: 'nftables', path: 'ClusterIP, nftables', services, usPerConnection: services === 10 ? 99 : 103, addedUsPerConnection: services === 10 ? -1 : 3 },
      { mode: 'ebpf', path: 'ClusterIP, eBPF', services, usPerConnection: 101, addedUsPerConnection: 1 },
    ]),
  },
  rss: {
    rows: ['ebpf', 'iptables'].flatMap((mode) => [100, 1000].map((services) => ({ mode, services, rssMiB: 80, rssSettledMiB: 79, peakMiB: 90, firstSyncMs: 10, startToSyncedMs: 900 }))),
    failures: [{ mode: 'nftables', services: 1000, error: 'no first sync within 600000 ms' }],
  },
  lab: { note: 'lab note', modes: ['iptables', 'nftables', 'ebpf'].map((mode) => ({ mode, directConnectionsPerSecond: 9000, clusterIpConnectionsPerSecond: 8500, directGbitPerSecond: 20, clusterIpGbitPerSecond: 19, connectionsRatio: 0.94, throughputRatio: 0.95 })) },
  decode: { rows: [1, 10, 100].map((endpoints) => ({ endpoints, protobufBytes: 100 * endpoints, jsonBytes: 300 * endpoints, bytesRatio: 0.333, protobufEventsPerSec: 200_000 / endpoints, jsonEventsPerSec: 100_000 / endpoints, speedRatio: 2 })) },
  model: { rows: [{ services: 10_000, endpointsPerService: 10, buildMs: 900, heapMB: 60, heapBytesPerService: 6000, perEventUs: 20 }], perEventRatio100kTo10k: 1.1 },
  snat: { error: 'exited with 1:\nRTNETLINK answers: Operation not permitted' },
};

/** A strict enough XML check for what the renderer writes: one root, balanced tags, quoted attributes, known entities. */
function assertWellFormed(xml: string, file: string): void {
  const stack: string[] = [];
  let roots = 0;
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|<!--[\s\S]*?-->|<\?[\s\S]*?\?>/g;
  let last = 0;
  for (let m = tag.exec(xml); m !== null; m = tag.exec(xml)) {
    const text = xml.slice(last, m.index);
    assert.ok(!/[<>]/.test(text), `${file}: stray markup near ${JSON.stringify(text.slice(0, 60))}`);
    for (const e of text.match(/&[^;\s]*;?/g) ?? []) assert.match(e, /^&(amp|lt|gt|quot|apos|#\d+);$/, `${file}: bad entity ${e}`);
    last = tag.lastIndex;
    if (m[2] === undefined) continue;
    if (m[1] === '/') assert.equal(stack.pop(), m[2], `${file}: </${m[2]}> closes the wrong element`);
    else {
      if (stack.length === 0) roots++;
      if (m[4] !== '/') stack.push(m[2]);
    }
  }
  assert.equal(xml.slice(last).trim(), '', `${file}: text after the root`);
  assert.deepEqual(stack, [], `${file}: unclosed ${stack.join(', ')}`);
  assert.equal(roots, 1, `${file}: one root element`);
  assert.match(xml, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.ok(!/NaN|Infinity|undefined/.test(xml), `${file}: a figure that is not a number`);
}

describe('benchmark report', () => {
  let dir: string;
  let written: string[];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'switchyard-report-test-'));
    for (const [name, r] of Object.entries(fixtures)) writeFileSync(join(dir, `${name}.json`), JSON.stringify({ name, environment, ...r }));
    written = render({ resultsDir: dir, plotsDir: join(dir, 'report'), reportPath: join(dir, 'REPORT.md') });
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes well-formed SVGs that carry every series and say machine, kernel and date', () => {
    const svgs = readdirSync(join(dir, 'report')).sort();
    assert.deepEqual(svgs, ['connection-setup.svg', 'decode.svg', 'lab.svg', 'one-change.svg', 'per-packet.svg', 'rss.svg', 'sync.svg']);
    const expected: Record<string, string[]> = {
      'per-packet.svg': ['eBPF kern-ctx: new flow', 'eBPF kern-ctx: established', 'eBPF portable: new flow', 'eBPF portable: established', 'iptables: first packet*', 'nftables: first packet*'],
      'connection-setup.svg': ['pod IP directly', 'ClusterIP, iptables', 'ClusterIP, nftables', 'ClusterIP, ebpf'],
      'sync.svg': ['iptables', 'nftables', 'ebpf'],
      'one-change.svg': ['iptables', 'nftables', 'ebpf', 'iptables, as a full sync', 'nftables, as a full sync'],
      'rss.svg': ['ebpf, after first sync', 'iptables, after first sync', 'ebpf, peak', 'iptables, peak'],
      'lab.svg': ['connection rate', 'bulk throughput'],
      'decode.svg': ['protobuf', 'JSON'],
    };
    for (const f of svgs) {
      const svg = readFileSync(join(dir, 'report', f), 'utf8');
      assertWellFormed(svg, f);
      assert.match(svg, SUBTITLE, `${f} says where it was measured`);
      for (const s of expected[f]!) {
        const name = s.replace(/&/g, '&amp;');
        assert.ok(svg.includes(`<g class="series" data-series="${name}">`), `${f}: series ${s}`);
        assert.ok(svg.includes(`<g class="legend" data-series="${name}">`), `${f}: legend of ${s}`);
      }
    }
  });

  it('plots service counts on a log axis and leaves out what a log axis cannot show', () => {
    const svg = readFileSync(join(dir, 'report', 'per-packet.svg'), 'utf8');
    for (const t of ['10', '100', '1000', '10k']) assert.ok(svg.includes(`text-anchor="middle">${t}</text>`), `x tick ${t}`);
    const nft = /<g class="series" data-series="nftables: first packet\*">([\s\S]*?)<\/g>/.exec(svg)![1]!;
    assert.equal(nft.match(/<circle/g)?.length, 2, 'the negative point at 10 services is left out');
    const ipt = /<g class="series" data-series="eBPF kern-ctx: new flow">([\s\S]*?)<\/g>/.exec(svg)![1]!;
    assert.equal(ipt.match(/<circle/g)?.length, 3);
  });

  it('writes a Markdown report that links every plot and says what could not run and why', () => {
    const md = readFileSync(join(dir, 'REPORT.md'), 'utf8');
    for (const f of readdirSync(join(dir, 'report'))) assert.ok(md.includes(`](report/${f})`), `links ${f}`);
    assert.ok(written.includes(join(dir, 'REPORT.md')));
    assert.match(md, /\| snat \| 2026-01-02 03:04:05 \| Fixture CPU, 2 CPUs, 4 GiB \| 6\.1\.0-fixture \| v24\.0\.0 \| yes \| 0\.5 \| 12 \| could not run \|/);
    assert.match(md, /## NodePort with SNAT[^#]*Could not run on this machine[^#]*RTNETLINK answers: Operation not permitted/);
    assert.match(md, /no first sync within 600000 ms/);
    assert.match(md, /- datapath: 10, 1000, 10000 services, 10 backends each; builds kern-ctx, portable/);
    assert.match(md, /- rules: syncs at 100, 1000 services; connection setup at 10, 1000, 10000 services/);
    assert.match(md, /\| kern-ctx \| 10000 \| 100000 \| 1600 \|/);
    assert.match(md, /`portable`: new flow 1\.55x/);
  });

  it('renders the same bytes from the same results, and says which results are missing', () => {
    const again = join(dir, 'again');
    render({ resultsDir: dir, plotsDir: join(again, 'report'), reportPath: join(again, 'REPORT.md') });
    assert.equal(readFileSync(join(again, 'REPORT.md'), 'utf8'), readFileSync(join(dir, 'REPORT.md'), 'utf8'));
    for (const f of readdirSync(join(dir, 'report'))) assert.equal(readFileSync(join(again, 'report', f), 'utf8'), readFileSync(join(dir, 'report', f), 'utf8'));
    const empty = join(dir, 'empty');
    render({ resultsDir: join(empty, 'none'), plotsDir: join(empty, 'report'), reportPath: join(empty, 'REPORT.md') });
    const md = readFileSync(join(empty, 'REPORT.md'), 'utf8');
    assert.match(md, /Not run: there is no `bench\/results\/datapath\.json`\. Run `npm run bench:datapath`/);
    assert.deepEqual(readdirSync(join(empty, 'report')), []);
  });

  it('escapes text and draws bars and lines from the data alone', () => {
    const line = lineChart({ title: 'a < b & "c"', subtitle: 's', xLabel: 'x', yLabel: 'y', xLog: true, series: [{ name: 'one & two', points: [[1, 1], [100, 3]] }] });
    assertWellFormed(line, 'line');
    assert.ok(line.includes('<title>a &lt; b &amp; &quot;c&quot;</title>'));
    const bars = barChart({ title: 't', subtitle: 's', yLabel: 'ratio', categories: ['a', 'b'], series: [{ name: 'r', values: [0.9, null] }], reference: { value: 1, label: 'one' } });
    assertWellFormed(bars, 'bars');
    const group = /<g class="series" data-series="r">([\s\S]*?)<\/g>/.exec(bars)![1]!;
    assert.equal(group.match(/<rect /g)?.length, 1, 'a missing value draws no bar');
  });
});
