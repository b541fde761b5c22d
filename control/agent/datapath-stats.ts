// Datapath statistics for /metrics, read off the request path. Per-service counters are one
// per-CPU lookup per service port and the conntrack count walks its tables: at 100k services a
// scrape that did this itself would block the event loop for as long as the walk takes, twice
// (packets and bytes read the same entries). A timer refreshes a snapshot instead; scrapes read
// it and cost what formatting costs. Drop counters, a handful of lookups, stay live.
import type { DatapathStats } from '../server/metrics.ts';

type ServiceRow = ReturnType<DatapathStats['services']>[number];
type MapRow = ReturnType<DatapathStats['maps']>[number];

export class CachedDatapathStats implements DatapathStats {
  private readonly source: DatapathStats;
  private timer: NodeJS.Timeout | undefined;
  private rows: ServiceRow[] = [];
  private mapRows: MapRow[] = [];
  private ct = 0;
  /** When the snapshot was last taken (ms since epoch), 0 before the first. */
  refreshedAt = 0;
  /** How long the last refresh took (ms). */
  lastRefreshMs = 0;

  constructor(source: DatapathStats) {
    this.source = source;
  }

  /** Takes a snapshot now, then every intervalMs. */
  start(intervalMs: number, onError?: (e: Error) => void): void {
    const tick = (): void => {
      try {
        this.refresh();
      } catch (e) {
        onError?.(e as Error);
      }
    };
    tick();
    this.timer = setInterval(tick, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  refresh(): void {
    const t0 = performance.now();
    this.rows = this.source.services();
    this.mapRows = this.source.maps();
    this.ct = this.source.conntrackEntries();
    this.refreshedAt = Date.now();
    this.lastRefreshMs = performance.now() - t0;
  }

  services(): ServiceRow[] {
    return this.rows;
  }

  maps(): MapRow[] {
    return this.mapRows;
  }

  conntrackEntries(): number {
    return this.ct;
  }

  drops(): Readonly<Record<string, bigint>> {
    return this.source.drops();
  }
}
