// Exponential backoff with jitter, as client-go's reflector does (its backoff manager: 800 ms
// doubling to 30 s), bounded above, and forgotten after a healthy period: a failure that comes
// `resetAfterMs` after the previous one starts again from `initialMs` (client-go: 2 minutes), so
// one bad minute a day does not leave every later hiccup waiting 30 s.

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  factor: number;
  /** Fraction of the delay that is randomised (0..1). */
  jitter: number;
  /** A failure this long after the previous one starts from initialMs again. */
  resetAfterMs?: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 800, maxMs: 30_000, factor: 2, jitter: 0.5, resetAfterMs: 120_000 };

export class Backoff {
  private attempt = 0;
  private lastAt: number | undefined;
  private readonly options: BackoffOptions;
  private readonly random: () => number;
  private readonly now: () => number;

  constructor(options: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random, now: () => number = Date.now) {
    this.options = options;
    this.random = random;
    this.now = now;
  }

  /** The next delay. */
  next(): number {
    const { initialMs, maxMs, factor, jitter } = this.options;
    const resetAfterMs = this.options.resetAfterMs ?? DEFAULT_BACKOFF.resetAfterMs!;
    const now = this.now();
    if (this.lastAt !== undefined && now - this.lastAt >= resetAfterMs) this.attempt = 0;
    this.lastAt = now;
    const base = Math.min(maxMs, initialMs * factor ** this.attempt);
    this.attempt++;
    return Math.round(base * (1 - jitter) + base * jitter * this.random());
  }

  reset(): void {
    this.attempt = 0;
    this.lastAt = undefined;
  }

  get attempts(): number {
    return this.attempt;
  }
}
