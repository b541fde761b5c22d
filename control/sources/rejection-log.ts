// Logs each rejection once per object and reason (not once per event, so a storm of updates
// to a broken object does not flood the log) and counts them by reason for metrics.
import type { Rejection, RejectionReason } from '../model/rejections.ts';
import { REJECTION_REASONS } from '../model/rejections.ts';

export interface WarnLogger {
  warn(fields: Record<string, unknown>, message: string): void;
}

export class RejectionLog {
  private readonly logger: WarnLogger;
  private readonly current = new Map<string, Set<string>>();
  private readonly totals = new Map<RejectionReason, number>(REJECTION_REASONS.map((r) => [r, 0]));
  private readonly anonymousLogged = new Set<string>();

  constructor(logger: WarnLogger) {
    this.logger = logger;
  }

  /** The rejections an object has now; new ones are logged and counted, repeats are not. */
  record(object: string, rejections: readonly Rejection[]): void {
    const seen = this.current.get(object) ?? new Set<string>();
    const now = new Set<string>();
    for (const r of rejections) {
      const id = `${r.reason}\u0000${r.detail}`;
      now.add(id);
      if (seen.has(id)) continue;
      this.totals.set(r.reason, (this.totals.get(r.reason) ?? 0) + 1);
      this.logger.warn({ object: r.object, reason: r.reason, detail: r.detail, dropped: r.dropped }, `rejected ${r.dropped === 'object' ? '' : 'part of '}${r.object}: ${r.detail}`);
    }
    if (now.size > 0) this.current.set(object, now);
    else this.current.delete(object);
  }

  /**
   * Rejections of an object that cannot be identified (no name or namespace): each delivery is
   * counted, and each distinct problem logged once (a bounded memory of what was logged, so
   * endless junk cannot grow it).
   */
  recordAnonymous(rejections: readonly Rejection[]): void {
    for (const r of rejections) {
      this.totals.set(r.reason, (this.totals.get(r.reason) ?? 0) + 1);
      const id = `${r.reason}\u0000${r.detail}`;
      if (this.anonymousLogged.has(id)) continue;
      if (this.anonymousLogged.size >= 1000) this.anonymousLogged.clear();
      this.anonymousLogged.add(id);
      this.logger.warn({ object: r.object, reason: r.reason, detail: r.detail, dropped: r.dropped }, `rejected ${r.object}: ${r.detail}`);
    }
  }

  /** The object is gone: if it comes back broken, that is news again. */
  forget(object: string): void {
    this.current.delete(object);
  }

  /** Rejections counted so far, by reason (every reason present, zeros included). */
  counts(): ReadonlyMap<RejectionReason, number> {
    return this.totals;
  }

  total(): number {
    let n = 0;
    for (const v of this.totals.values()) n += v;
    return n;
  }
}
