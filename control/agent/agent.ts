// The agent: sources -> model -> sync runner -> backend. It programs nothing until every source
// has delivered its first complete view (so an adopted datapath is diffed against the whole
// truth, never flushed), and on stop it leaves the datapath in place (hitless restart).
import type { Logger } from 'pino';
import type { ProxyBackend } from '../backends/backend.ts';
import type { EbpfBackendOptions } from '../backends/ebpf/backend.ts';
import { compileDatapath } from '../backends/ebpf/compile.ts';
import { EbpfProxyBackend } from '../backends/ebpf/proxy-backend.ts';
import { apiFrontends } from '../inspect/api-view.ts';
import { IptablesProxyBackend } from '../backends/iptables/proxy-backend.ts';
import { IpvsProxyBackend } from '../backends/ipvs/proxy-backend.ts';
import { NftablesProxyBackend } from '../backends/nftables/proxy-backend.ts';
import { KernelspaceProxyBackend } from '../backends/hns/proxy-backend.ts';
import type { WinkernelConfig } from '../backends/hns/winkernel-config.ts';
import { listAddresses, NetlinkWatcher } from '../backends/ebpf/devices.ts';
import { CachedDatapathStats } from './datapath-stats.ts';
import { nodeFacts } from '../model/node.ts';
import { ChangeTracker } from '../model/tracker.ts';
import type { ModelConfig } from '../model/types.ts';
import { FilesSource } from '../sources/files/source.ts';
import { SOURCE_KINDS, type KindName } from '../sources/kube/kinds.ts';
import { KubeSource } from '../sources/kube/source.ts';
import { agentKubeConfig } from '../sources/kube/bootstrap.ts';
import { KubeConfigTransport } from '../sources/kube/transport.ts';
import { ModelFeed } from '../sources/model-feed.ts';
import { RejectionLog } from '../sources/rejection-log.ts';
import { SyncRunner } from './sync-runner.ts';
import type { HealthSnapshot } from '../server/health.ts';
import { ProxyMetrics, type DatapathStats } from '../server/metrics.ts';
import { ProxyServers } from '../server/servers.ts';
import { countRequests } from '../server/request-metrics.ts';
import { isHealthy } from '../server/health.ts';
import { ServiceHealthServers } from '../server/service-health.ts';

export type SourceOptions =
  | { kind: 'files'; dir: string }
  | { kind: 'kube'; kubeconfig?: string; master?: string; contentType: 'protobuf' | 'json'; qps?: number; burst?: number; viaClusterIP?: boolean; serviceCIDRs?: string[] };

/** Failed service ports named one by one per sync; the rest are summed up in one line. */
const FAILED_PORTS_LOGGED = 20;

export interface AgentOptions {
  nodeName: string;
  /** How often the datapath statistics /metrics reports are re-read (default 10 s). */
  statsIntervalMs?: number;
  model: ModelConfig;
  source: SourceOptions;
  backend:
    | ({ mode: 'ebpf' } & Omit<EbpfBackendOptions, 'log'>)
    | { mode: 'iptables' | 'nftables'; minSyncPeriodMs: number }
    | { mode: 'ipvs'; minSyncPeriodMs: number; scheduler: string; timeouts: { tcp: number; tcpFin: number; udp: number } }
    | { mode: 'kernelspace'; minSyncPeriodMs: number; winkernel: WinkernelConfig; healthzPort: number };
  logger: Logger;
  /** kube-proxy's --healthz-bind-address / --metrics-bind-address; undefined: no server. */
  healthzBindAddress?: string;
  metricsBindAddress?: string;
  /** kube-proxy's --bind-address-hard-fail. */
  bindAddressHardFail?: boolean;
  /** kube-proxy's syncPeriod: health fails when a change waits longer than twice this. */
  syncPeriodMs: number;
  /** What /configz shows. */
  configz?: unknown;
  /** kube-proxy's --config-sync-period: a full resync that re-reads the maps and repairs drift (0: never). */
  configSyncPeriodMs?: number;
  /** kube-proxy's --bind-address when it names one address: the node IP of its family. */
  bindAddress?: string;
}

export class Agent {
  private readonly o: AgentOptions;
  readonly tracker: ChangeTracker;
  readonly rejections: RejectionLog;
  private backend: ProxyBackend | undefined;
  private runner: SyncRunner | undefined;
  private addressWatcher: NetlinkWatcher | undefined;
  private stats: CachedDatapathStats | undefined;
  /** Refreshes of the statistics in the first seconds after the first sync (cleared on stop). */
  private readonly earlyRefreshes: NodeJS.Timeout[] = [];
  private files: FilesSource | undefined;
  private kube: KubeSource | undefined;
  private readonly synced = new Set<KindName>();
  readonly metrics: ProxyMetrics;
  private servers: ProxyServers | undefined;
  private readonly serviceHealth: ServiceHealthServers;
  /** Where the servers listen, once started. */
  addresses: { healthz: string; metrics: string } | undefined;
  private ready!: () => void;
  /** Resolves when the first sync after all sources synced has been applied. */
  readonly firstSync: Promise<void>;
  private firstDone = false;
  private readonly unsupportedLogged = new Set<string>();
  private readonly startedAt = Date.now();

  constructor(o: AgentOptions) {
    this.o = o;
    this.tracker = new ChangeTracker(o.model, undefined, { triggerTimesAfter: Date.now() });
    this.rejections = new RejectionLog(o.logger);
    this.firstSync = new Promise((resolve) => (this.ready = resolve));
    this.metrics = new ProxyMetrics(
      () => this.rejections.counts(),
      () => this.datapathStats(),
      () => (this.backend instanceof IptablesProxyBackend ? this.backend.iptables : undefined),
      () => (this.backend instanceof NftablesProxyBackend ? this.backend.nftables : undefined),
    );
    this.serviceHealth = new ServiceHealthServers({
      proxyHealthy: () => isHealthy(this.healthSnapshot()),
      onError: (f) => o.logger.error({ family: f.family, port: f.port, error: f.error.message, attempts: f.attempts, retryInMs: f.retryInMs }, `healthCheckNodePort ${f.port} (IPv${f.family}): ${f.error.message}; retrying in ${f.retryInMs} ms`),
      onRecovered: (family, port) => o.logger.info({ family, port }, `healthCheckNodePort ${port} (IPv${family}) listening`),
    });
  }

  /** The state health answers are computed from. */
  healthSnapshot(): HealthSnapshot {
    const node = this.tracker.nodeFacts;
    return {
      now: Date.now(),
      lastUpdated: this.runner?.lastSyncAt || undefined,
      // Before the first sync, the agent's start counts as the moment a change was queued.
      lastQueued: this.runner?.unappliedSince ?? (this.firstDone ? undefined : this.startedAt),
      healthTimeoutMs: 2 * this.o.syncPeriodMs,
      nodeDeleting: node.deleting,
      nodeToBeDeleted: node.toBeDeleted,
      families: this.o.model.families,
    };
  }

  /** What /metrics reads of the datapath: a snapshot a timer refreshes, never a map walk per scrape. */
  private datapathStats(): DatapathStats | undefined {
    if (this.stats !== undefined) return this.stats;
    const dp = this.backend instanceof EbpfProxyBackend ? this.backend.ebpf.datapath : undefined;
    if (dp === undefined) return undefined;
    const source: DatapathStats = {
      services: () => {
        const ports = new Map<string, { protocol: string; family: string }>();
        for (const fs of this.tracker.state().families.values()) for (const sp of fs.servicePorts.values()) ports.set(sp.key, { protocol: sp.protocol, family: `IPv${sp.family}` });
        return dp.serviceStats().map((s) => ({ servicePort: s.servicePort, protocol: ports.get(s.servicePort)?.protocol ?? '', family: ports.get(s.servicePort)?.family ?? '', packets: s.packets, bytes: s.bytes }));
      },
      maps: () => dp.mapStats(),
      conntrackEntries: () => dp.conntrackEntries(),
      drops: () => dp.drops(),
    };
    this.stats = new CachedDatapathStats(source);
    this.stats.start(this.o.statsIntervalMs ?? 10_000, (e) => this.o.logger.error({ error: e.message }, `reading datapath statistics: ${e.message}`));
    return this.stats;
  }

  async start(): Promise<void> {
    const log = this.o.logger;
    // Before anything is programmed: an API server this node cannot reach yet stops the agent here.
    const kubeConfig = this.o.source.kind === 'kube' ? agentKubeConfig(this.o.source) : undefined;
    const readHostAddresses = async (): Promise<string[]> => {
      const addresses = (await listAddresses()).map((a) => a.address);
      // A specific --bind-address is the node IP of its family, ahead of the interfaces'.
      if (this.o.bindAddress !== undefined && !['0.0.0.0', '::', ''].includes(this.o.bindAddress)) addresses.unshift(this.o.bindAddress);
      return addresses;
    };
    const hostAddresses = await readHostAddresses();
    this.tracker.setNode(nodeFacts(this.o.nodeName, undefined, hostAddresses));
    // Bound first, before anything touches the kernel: a busy port stops the start here.
    if (this.o.healthzBindAddress !== undefined || this.o.metricsBindAddress !== undefined) {
      this.servers = new ProxyServers({
        healthzBindAddress: this.o.healthzBindAddress,
        metricsBindAddress: this.o.metricsBindAddress,
        bindAddressHardFail: this.o.bindAddressHardFail,
        snapshot: () => this.healthSnapshot(),
        metrics: this.metrics,
        proxyMode: this.o.backend.mode,
        configz: () => this.o.configz ?? {},
        ...(this.o.backend.mode === 'ebpf' ? {
              // The model the backend keeps incrementally; compiled afresh only before the first sync.
              frontends: () => apiFrontends((this.backend instanceof EbpfProxyBackend ? this.backend.ebpf.compiled : undefined) ?? compileDatapath(this.tracker.state())),
            } : {}),
        logger: log,
      });
      this.addresses = await this.servers.listen();
      log.info(this.addresses, `serving health on ${this.addresses.healthz || (this.o.healthzBindAddress ? '(not bound yet)' : '(off)')} and metrics on ${this.addresses.metrics || (this.o.metricsBindAddress ? '(not bound yet)' : '(off)')}`);
    }
    const b = this.o.backend;
    // The eBPF datapath verifies on a worker thread (seconds for the whole object) while the
    // sources list: the first sync waits for whichever comes last, not for both in turn.
    let ruleBackend: ProxyBackend | undefined;
    if (b.mode === 'kernelspace') {
      ruleBackend = new KernelspaceProxyBackend({ winkernel: b.winkernel, minSyncPeriodMs: b.minSyncPeriodMs, syncPeriodMs: this.o.syncPeriodMs, healthzPort: b.healthzPort });
    } else if (b.mode !== 'ebpf') {
      const rules = { families: this.o.model.families, minSyncPeriodMs: b.minSyncPeriodMs, syncPeriodMs: this.o.syncPeriodMs };
      ruleBackend =
        b.mode === 'ipvs'
          ? new IpvsProxyBackend({ ...rules, scheduler: b.scheduler, timeouts: b.timeouts, onError: (e) => log.error({ error: e.message }, `draining real servers: ${e.message}`) })
          : b.mode === 'nftables'
            ? new NftablesProxyBackend(rules)
            : new IptablesProxyBackend(rules);
    }
    const resyncMs = this.o.configSyncPeriodMs ?? 0;
    const opening: Promise<ProxyBackend> = b.mode === 'ebpf' ? EbpfProxyBackend.open({ ...b, log: (f, m) => log.info(f, m) }, resyncMs) : Promise.resolve(ruleBackend!);
    let sourcesStarted!: () => void;
    const afterSources = new Promise<void>((resolve) => (sourcesStarted = resolve));
    // Started after the sources, as before the load was asynchronous: the eBPF backend attaches in
    // start() only where pins were adopted, and otherwise after its first sync.
    const ready = (async (): Promise<ProxyBackend> => {
      const backend = await opening;
      this.backend = backend;
      await afterSources;
      await backend.start();
      return backend;
    })();
    ready.catch(() => undefined); // awaited at the end of start(); a sync waiting on it fails with it
    const runner = new SyncRunner({
      tracker: this.tracker,
      minSyncPeriodMs: ruleBackend?.minSyncPeriodMs ?? EbpfProxyBackend.MIN_SYNC_PERIOD_MS,
      syncPeriodMs: ruleBackend?.syncPeriodMs ?? resyncMs,
      sync: async (changes, full) => {
        const backend = await ready;
        const state = this.tracker.state();
        const t0 = performance.now();
        const report = await backend.sync(state, changes, full, !this.firstDone);
        const ms = +(performance.now() - t0).toFixed(1);
        const m = this.metrics;
        m.syncDuration.observe(ms / 1000);
        if (typeof report.details.full === 'boolean') (report.details.full ? m.fullSyncDuration : m.partialSyncDuration).observe(ms / 1000);
        m.lastSync.set(Date.now() / 1000);
        // Only after success, as kube-proxy: a failed sync's trigger times are not observed.
        // Only what reached the kernel: a service with a port the maps do not hold is not programmed.
        const now = Date.now();
        const blocked = new Set((report.notProgrammed ?? []).map((f) => f.service));
        const triggers = changes.lastChangeTriggers ?? changes.lastChangeTriggerTimes.map((time) => ({ service: '', time }));
        for (const t of triggers) {
          if (blocked.has(t.service)) continue;
          const seconds = Math.max(0, now - t.time) / 1000;
          m.networkProgramming.observe(seconds);
          m.networkProgrammingFine.observe(seconds);
        }
        m.serviceChangesTotal.inc(changes.serviceChanges);
        m.endpointChangesTotal.inc(changes.endpointChanges);
        m.serviceChangesPending.set(0);
        m.endpointChangesPending.set(0);
        let noLocalInternal = 0;
        let noLocalExternal = 0;
        for (const fs of state.families.values()) {
          for (const sp of fs.servicePorts.values()) {
            if (sp.internalPolicyLocal && sp.localEndpoints.length === 0) noLocalInternal++;
            if (sp.externalPolicyLocal && sp.localEndpoints.length === 0) noLocalExternal++;
          }
        }
        m.noLocalEndpoints.set({ traffic_policy: 'Internal' }, noLocalInternal);
        m.noLocalEndpoints.set({ traffic_policy: 'External' }, noLocalExternal);
        this.serviceHealth.update(state);
        const perTable = report.details.rulesPerTable as Record<string, number> | undefined;
        for (const [table, n] of Object.entries(perTable ?? {})) m.iptablesRules.set({ table }, n);
        // One line per service port that failed (its first error and how many of its entries),
        // at most FAILED_PORTS_LOGGED of them and then one summary: a full map at 100k services
        // must not write 100k lines per sync.
        const byPort = new Map<string, { first: (typeof report.failed)[number]; count: number }>();
        for (const f of report.failed) {
          const key = f.servicePort ?? f.frontend;
          const seen = byPort.get(key);
          if (seen === undefined) byPort.set(key, { first: f, count: 1 });
          else seen.count++;
        }
        let logged = 0;
        for (const [servicePort, { first, count }] of byPort) {
          if (logged++ === FAILED_PORTS_LOGGED) {
            log.error({ servicePorts: byPort.size, entries: report.failed.length }, `could not program ${byPort.size - FAILED_PORTS_LOGGED} more service ports (${byPort.size} in all, ${report.failed.length} entries); switchyard_frontends_not_programmed counts them`);
            break;
          }
          log.error({ servicePort, frontend: first.frontend, entries: count, error: first.error }, `could not program ${servicePort}${count > 1 ? ` (${count} entries)` : first.frontend !== servicePort ? ` (${first.frontend})` : ''}: ${first.error}`);
        }
        const failedNow = report.notProgrammed ?? report.failed;
        const mapFull = failedNow.filter((f) => f.error.startsWith('map full')).length;
        this.metrics.notProgrammed.set({ reason: 'map-full' }, mapFull);
        this.metrics.notProgrammed.set({ reason: 'other' }, failedNow.length - mapFull);
        this.metrics.notProgrammed.set({ reason: 'unsupported' }, report.unsupported.length);
        for (const u of report.unsupported) {
          if (this.unsupportedLogged.has(u.servicePort)) continue;
          this.unsupportedLogged.add(u.servicePort);
          log.warn({ servicePort: u.servicePort }, `not programmed: ${u.servicePort}: ${u.reason}`);
        }
        log.info({ mode: backend.mode, ...report.details, failed: report.failed.length, unsupported: report.unsupported.length, ms, upserted: changes.upserted.length, removed: changes.removed.length }, 'synced');
        if (!this.firstDone) {
          this.firstDone = true;
          // The snapshot taken at start predates the first sync (the eBPF backend attaches after
          // it): one now, and a few in the first seconds, when a new node is looked at, before
          // the timer's period takes over.
          const refresh = (): void => {
            try {
              this.stats?.refresh();
            } catch (e) {
              log.error({ error: (e as Error).message }, `reading datapath statistics: ${(e as Error).message}`);
            }
          };
          refresh();
          for (const ms of [1000, 2000, 4000]) this.earlyRefreshes.push(setTimeout(refresh, ms).unref());
          this.ready();
        }
      },
      onError: (e, failures, retryInMs) => log.error({ error: e.message, failures, retryInMs }, `sync failed (${failures} in a row); retrying in ${retryInMs} ms`),
    });
    this.runner = runner;
    const feed = new ModelFeed({
      tracker: this.tracker,
      rejections: this.rejections,
      nodeName: this.o.nodeName,
      hostAddresses,
      onChange: () => {
        const pending = this.tracker.pendingChanges;
        this.metrics.serviceChangesPending.set(pending.services);
        this.metrics.endpointChangesPending.set(pending.endpoints);
        this.metrics.lastQueued.set(Date.now() / 1000);
        if (this.synced.size === SOURCE_KINDS.length) this.runner!.notify();
      },
      onSynced: (kind) => {
        this.synced.add(kind);
        this.metrics.lastSourceSync.set({ kind }, Date.now() / 1000);
        if (this.synced.size === SOURCE_KINDS.length) {
          log.info({ kinds: [...this.synced] }, 'sources synced');
          for (const r of this.tracker.orphanSlices()) this.rejections.record(r.object, [r]);
          this.runner!.notify();
          this.runner!.start(); // periodic full resyncs only once the whole truth is known
        }
      },
    });
    // Addresses added to or removed from the node's interfaces after start (a second NIC, a
    // VIP moved here) change where NodePorts answer: re-read on every address event.
    let known = hostAddresses.join(',');
    this.addressWatcher = new NetlinkWatcher({
      objects: ['address'],
      onChange: () => {
        readHostAddresses()
          .then((now) => {
            if (now.join(',') === known) return;
            log.info({ before: known.split(','), after: now }, 'host addresses changed');
            known = now.join(',');
            feed.setHostAddresses(now);
          })
          .catch((e: Error) => log.error({ error: e.message }, `reading host addresses: ${e.message}`));
      },
      onRestart: (why, ms) => log.warn({ error: why, restartInMs: ms }, `${why}; restarting it in ${ms} ms, then re-reading the addresses`),
    });
    this.addressWatcher.start();
    if (this.o.source.kind === 'files') {
      this.files = new FilesSource({ dir: this.o.source.dir, sink: feed });
      await this.files.start();
    } else {
      const limit = this.o.source.qps !== undefined ? { qps: this.o.source.qps, burst: this.o.source.burst ?? 10 } : undefined;
      const transport = countRequests(new KubeConfigTransport(kubeConfig!, limit), this.metrics.restClientRequests);
      this.kube = new KubeSource({
        transport,
        nodeName: this.o.nodeName,
        sink: feed,
        contentType: this.o.source.contentType,
        events: {
          error: (kind, e, delayMs) => {
            this.metrics.watchEvents.inc({ kind, event: 'error' });
            this.metrics.apiserverUp.set(0);
            log.warn({ kind, error: e.message, delayMs }, `watch ${kind} failed; retrying`);
          },
          relist: (kind, reason) => {
            this.metrics.watchEvents.inc({ kind, event: 'relist' });
            this.metrics.apiserverUp.set(1);
            this.metrics.lastSourceSync.set({ kind }, Date.now() / 1000);
            log.info({ kind, reason }, `relisted ${kind}`);
          },
          reconnect: (kind) => {
            this.metrics.watchEvents.inc({ kind, event: 'reconnect' });
            this.metrics.apiserverUp.set(1);
          },
          decodeError: (kind) => this.metrics.watchEvents.inc({ kind, event: 'decode-error' }),
          // Said once per absence: an API server before 1.33 has no ServiceCIDR objects (404), an
          // agent upgraded before its ClusterRole may not read them (403).
          missing: (kind, e) => log.info({ kind, error: e.message }, `${kind} objects cannot be read (${e.message}): an API server before 1.33 has none, or the ClusterRole lacks list/watch on them; using the configured serviceCIDRs (--service-cluster-ip-range), if any, and asking again every 5 minutes`),
        },
      });
      this.kube.start();
    }
    sourcesStarted();
    await ready;
    this.datapathStats(); // the first snapshot now, not on the first scrape's request path
  }

  /** SIGTERM: stop watching and syncing; the datapath stays in the kernel. */
  async stop(): Promise<void> {
    for (const t of this.earlyRefreshes) clearTimeout(t);
    this.serviceHealth.close();
    this.addressWatcher?.stop();
    this.stats?.stop();
    await this.servers?.close();
    await this.files?.stop();
    await this.kube?.stop();
    await this.runner?.stop();
    this.backend?.close();
  }
}
