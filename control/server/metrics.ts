// Metrics with kube-proxy's names, types, labels and buckets (so existing dashboards keep
// working), and Switchyard's own (switchyard_*). prom-client holds them; the agent feeds them.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface DatapathStats {
  services(): Array<{ servicePort: string; protocol: string; family: string; packets: bigint; bytes: bigint }>;
  maps(): Array<{ name: string; entries: number; maxEntries: number }>;
  conntrackEntries(): number;
  /** Packets the datapath dropped, by reason (sy_drops, summed over CPUs). */
  drops(): Readonly<Record<string, bigint>>;
}

/** prometheus.ExponentialBuckets(start, factor, count) */
function exponential(start: number, factor: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => start * factor ** i);
}

/** A label value in the exposition format: backslash, double quote and newline escaped. */
const NEEDS_ESCAPE = /[\\"\n]/;
function labelValue(v: string): string {
  if (!NEEDS_ESCAPE.test(v)) return v;
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export class ProxyMetrics {
  readonly registry = new Registry();
  private readonly datapath: () => DatapathStats | undefined;
  readonly syncDuration: Histogram;
  readonly networkProgramming: Histogram;
  /** The same latency with buckets from 0.5 ms: kube-proxy's start at 0.25 s and cannot show an eBPF sync. */
  readonly networkProgrammingFine: Histogram;
  readonly lastSync: Gauge;
  readonly lastQueued: Gauge;
  readonly serviceChangesPending: Gauge;
  readonly serviceChangesTotal: Counter;
  readonly endpointChangesPending: Gauge;
  readonly endpointChangesTotal: Counter;
  readonly noLocalEndpoints: Gauge;
  readonly healthzTotal: Counter;
  readonly livezTotal: Counter;
  readonly rejected: Counter;
  readonly watchEvents: Counter;
  readonly apiserverUp: Gauge;
  readonly restClientRequests: Counter<'code' | 'host' | 'method'>;
  readonly lastSourceSync: Gauge;
  readonly notProgrammed: Gauge;

  readonly iptablesRules: Gauge;
  readonly fullSyncDuration: Histogram;
  readonly partialSyncDuration: Histogram;

  constructor(
    rejections: () => ReadonlyMap<string, number>,
    datapath: () => DatapathStats | undefined,
    iptables: () => { restoreFailures: number; partialRestoreFailures: number } | undefined = () => undefined,
    nftables: () => { syncFailures: number; partialSyncFailures: number } | undefined = () => undefined,
  ) {
    this.datapath = datapath;
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.syncDuration = new Histogram({ name: 'kubeproxy_sync_proxy_rules_duration_seconds', help: 'SyncProxyRules latency in seconds', buckets: exponential(0.001, 2, 15), registers });
    this.networkProgramming = new Histogram({
      name: 'kubeproxy_network_programming_duration_seconds',
      help: 'In Cluster Network Programming Latency in seconds',
      buckets: [0.25, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 75, 90, 105, 120, 135, 150, 165, 180, 195, 210, 225, 240, 255, 270, 285, 300],
      registers,
    });
    this.networkProgrammingFine = new Histogram({
      name: 'switchyard_network_programming_duration_seconds',
      help: 'Network programming latency in seconds (from an EndpointSlice\'s last-change-trigger-time to the change reaching the kernel), with millisecond buckets',
      buckets: exponential(0.0005, 2, 18),
      registers,
    });
    this.lastSync = new Gauge({ name: 'kubeproxy_sync_proxy_rules_last_timestamp_seconds', help: 'The last time proxy rules were successfully synced', registers });
    this.lastQueued = new Gauge({ name: 'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds', help: 'The last time a sync of proxy rules was queued', registers });
    this.serviceChangesPending = new Gauge({ name: 'kubeproxy_sync_proxy_rules_service_changes_pending', help: 'Pending proxy rules Service changes', registers });
    this.serviceChangesTotal = new Counter({ name: 'kubeproxy_sync_proxy_rules_service_changes_total', help: 'Cumulative proxy rules Service changes', registers });
    this.endpointChangesPending = new Gauge({ name: 'kubeproxy_sync_proxy_rules_endpoint_changes_pending', help: 'Pending proxy rules Endpoint changes', registers });
    this.endpointChangesTotal = new Counter({ name: 'kubeproxy_sync_proxy_rules_endpoint_changes_total', help: 'Cumulative proxy rules Endpoint changes', registers });
    this.noLocalEndpoints = new Gauge({ name: 'kubeproxy_sync_proxy_rules_no_local_endpoints_total', help: 'Number of services with a Local traffic policy and no endpoints', labelNames: ['traffic_policy'], registers });
    this.healthzTotal = new Counter({ name: 'kubeproxy_proxy_healthz_total', help: 'Cumulative proxy healthz HTTP status', labelNames: ['code'], registers });
    this.livezTotal = new Counter({ name: 'kubeproxy_proxy_livez_total', help: 'Cumulative proxy livez HTTP status', labelNames: ['code'], registers });
    // A counter: the rejection log counts since start and only ever adds, so each scrape
    // reports its totals (reset and re-added, as the iptables failure counters below).
    this.rejected = new Counter({
      name: 'switchyard_rejected_objects_total',
      help: 'Objects (or parts) refused by validation, by reason, since start',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset();
        for (const [reason, n] of rejections()) this.inc({ reason }, n);
      },
    });
    this.notProgrammed = new Gauge({
      name: 'switchyard_frontends_not_programmed',
      help: 'Frontends the last sync could not program, by reason (map-full: a map reached its size)',
      labelNames: ['reason'],
      registers,
    });
    this.iptablesRules = new Gauge({ name: 'kubeproxy_sync_proxy_rules_iptables_total', help: 'Total number of iptables rules owned by kube-proxy', labelNames: ['table'], registers });
    new Counter({
      name: 'kubeproxy_sync_proxy_rules_iptables_restore_failures_total',
      help: 'Cumulative proxy iptables restore failures',
      registers,
      collect() {
        const n = iptables()?.restoreFailures;
        if (n !== undefined) {
          this.reset();
          this.inc(n);
        }
      },
    });
    new Counter({
      name: 'kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total',
      help: 'Cumulative proxy iptables partial restore failures',
      registers,
      collect() {
        const n = iptables()?.partialRestoreFailures;
        if (n !== undefined) {
          this.reset();
          this.inc(n);
        }
      },
    });
    new Counter({
      name: 'kubeproxy_sync_proxy_rules_nftables_sync_failures_total',
      help: 'Cumulative proxy nftables sync failures',
      registers,
      collect() {
        const n = nftables();
        if (n !== undefined) {
          this.reset();
          this.inc(n.syncFailures + n.partialSyncFailures);
        }
      },
    });
    // iptables and nftables modes rewrite everything, or only what changed: timed apart.
    this.fullSyncDuration = new Histogram({ name: 'kubeproxy_sync_full_proxy_rules_duration_seconds', help: 'SyncProxyRules latency in seconds for full resyncs', buckets: exponential(0.001, 2, 15), registers });
    this.partialSyncDuration = new Histogram({ name: 'kubeproxy_sync_partial_proxy_rules_duration_seconds', help: 'SyncProxyRules latency in seconds for partial resyncs', buckets: exponential(0.001, 2, 15), registers });
    this.watchEvents = new Counter({ name: 'switchyard_watch_events_total', help: 'Watch reconnects, relists, failed requests (error) and decode errors by kind', labelNames: ['kind', 'event'], registers });
    this.apiserverUp = new Gauge({ name: 'switchyard_apiserver_up', help: '1 when the last list or watch request to the API server succeeded, 0 when it failed (absent with a manifests source)', registers });
    this.restClientRequests = new Counter({ name: 'rest_client_requests_total', help: 'Number of HTTP requests, partitioned by status code, method, and host.', labelNames: ['code', 'host', 'method'], registers });
    this.lastSourceSync = new Gauge({ name: 'switchyard_source_last_sync_timestamp_seconds', help: 'When each kind was last listed completely from its source', labelNames: ['kind'], registers });
    new Gauge({
      name: 'switchyard_map_fill_ratio',
      help: 'Entries over capacity, per BPF map',
      labelNames: ['map'],
      registers,
      collect() {
        for (const m of datapath()?.maps() ?? []) this.set({ map: m.name }, m.entries / m.maxEntries);
      },
    });
    new Counter({
      name: 'switchyard_datapath_drops_total',
      help: 'Packets the eBPF datapath dropped, by reason (no-backend, source-range, local-no-endpoint, snat-exhausted, ct-full, no-route, unsupported, frag-needed, ttl-exceeded, frag-no-first)',
      labelNames: ['reason'],
      registers,
      collect() {
        // The kernel's counters are the truth: each scrape reports them as they are (one
        // lookup per reason, never a map walk).
        this.reset();
        for (const [reason, packets] of Object.entries(datapath()?.drops() ?? {})) this.inc({ reason }, Number(packets));
      },
    });
    new Gauge({
      name: 'switchyard_conntrack_entries',
      help: 'Connection tracking entries (both directions of each flow)',
      registers,
      collect() {
        const dp = datapath();
        if (dp !== undefined) this.set(dp.conntrackEntries());
      },
    });
  }

  /**
   * The whole exposition: prom-client's metrics, then the per-service-port counters written here.
   * Those are one series per service port and family (200k at 100k services): prom-client's
   * labelled counters, reset and refilled on every scrape, took seconds for that many; plain
   * string building from the datapath snapshot takes milliseconds.
   */
  async text(): Promise<string> {
    const head = await this.registry.metrics();
    const rows = this.datapath()?.services() ?? [];
    if (rows.length === 0) return head;
    let packets = '# HELP switchyard_service_packets_total Packets the datapath translated, per service port\n# TYPE switchyard_service_packets_total counter\n';
    let bytes = '# HELP switchyard_service_bytes_total Bytes the datapath translated, per service port\n# TYPE switchyard_service_bytes_total counter\n';
    for (const r of rows) {
      const labels = `{service_port="${labelValue(r.servicePort)}",protocol="${labelValue(r.protocol)}",family="${labelValue(r.family)}"} `;
      packets += `switchyard_service_packets_total${labels}${r.packets}\n`;
      bytes += `switchyard_service_bytes_total${labels}${r.bytes}\n`;
    }
    return `${head.endsWith('\n') ? head : `${head}\n`}${packets}${bytes}`;
  }
}
