// Running a system tool (iptables-restore, nft, ipset, ipvsadm, conntrack, ip) with arguments as
// an argv array and its input on stdin, never through a shell, always with a timeout. `prefix` is
// prepended to every command (the lab runs the tools inside a node's netns through nsenter);
// empty in production.
// A runner knows its running children: stop() kills them (the agent's SIGTERM must not wait for
// a hung iptables-restore, nor leave it behind), and a SIGTERM or SIGINT to the process kills
// them too before the agent's own handlers finish.
import { execFile, type ChildProcess } from 'node:child_process';

export interface ToolResult {
  ok: boolean;
  /** stdout when ok; otherwise stderr (or why it did not run / was killed). */
  out: string;
  /** Killed after its timeout. */
  timedOut?: boolean;
}

export type ToolRunner = (file: string, args: string[], input?: string) => Promise<ToolResult>;

/** A runner that can kill what it started. */
export interface StoppableToolRunner extends ToolRunner {
  /** Kills the running children; later calls fail at once. */
  stop(): void;
}

export interface ToolRunnerOptions {
  /**
   * Time allowed to a call with little input (default 10 s); each KiB of input adds
   * `timeoutPerKiBMs` (default 50 ms). A timeout must not kill work the tool would finish:
   * iptables-nft-restore took 110-125 s here for the ~12 MiB of a 10k-service full sync on a busy
   * machine, which gets ~10 min; a one-service transaction gets ~10 s.
   */
  timeoutMs?: number;
  timeoutPerKiBMs?: number;
  /** `out` is stdout followed by stderr, whatever the exit status (tools that report on stderr). */
  bothStreams?: boolean;
}

/** Every child of every runner, for the process-wide signal handler. */
const live = new Set<ChildProcess>();
let signalsHooked = false;
/** A signal arrived: children killed since are not timeouts. */
let shuttingDown = false;

function hookSignals(): void {
  if (signalsHooked) return;
  signalsHooked = true;
  // Listeners of our own beside the agent's: they run first or after it, either way the
  // children go at once and the sync waiting on them fails instead of hanging the shutdown.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    const onSignal = (): void => {
      killAllTools();
      // Alone, our listener would keep the process from ending as the signal asks: give way.
      if (process.listenerCount(signal) === 1) {
        process.removeListener(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    // First in line: a `once` listener of the agent's that ran before ours would be gone, and
    // ours would think itself alone.
    process.prependListener(signal, onSignal);
  }
}

/** Kills every running child of every runner (SIGKILL: a hung tool may ignore SIGTERM). */
export function killAllTools(): void {
  shuttingDown = true;
  for (const child of live) child.kill('SIGKILL');
}

export function toolRunner(prefix: readonly string[] = [], options: ToolRunnerOptions = {}): StoppableToolRunner {
  const mine = new Set<ChildProcess>();
  let stopped = false;
  const base = options.timeoutMs ?? 10_000;
  const perKiB = options.timeoutPerKiBMs ?? 50;
  const run = (file: string, args: string[], input?: string): Promise<ToolResult> =>
    new Promise((resolve) => {
      if (stopped) {
        resolve({ ok: false, out: `${file}: not run, the backend is stopping` });
        return;
      }
      hookSignals();
      const argv = [...prefix, file, ...args];
      const timeout = Math.round(base + ((input?.length ?? 0) / 1024) * perKiB);
      const child = execFile(argv[0]!, argv.slice(1), { maxBuffer: 1 << 30, timeout, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
        live.delete(child);
        mine.delete(child);
        if (error === null || (options.bothStreams === true && error.killed !== true && typeof error.code === 'number')) {
          resolve({ ok: error === null, out: options.bothStreams === true ? `${stdout}${stderr}` : String(stdout) });
          return;
        }
        const timedOut = error.killed === true && !stopped && !shuttingDown;
        const why = timedOut ? `${file} killed after ${timeout} ms (timeout)` : error.killed === true ? `${file} killed: stopping` : '';
        resolve({ ok: false, out: [why, String(stderr || (why === '' ? error.message : ''))].filter((s) => s !== '').join(': '), ...(timedOut ? { timedOut } : {}) });
      });
      live.add(child);
      mine.add(child);
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(input);
    });
  return Object.assign(run, {
    stop(): void {
      stopped = true;
      for (const child of mine) child.kill('SIGKILL');
    },
  });
}

/**
 * The last `capacity` entries of something that happens once per sync (transactions sent), so a
 * long-running agent keeps a bounded amount; `total` counts them all, and since(n) gives what
 * came after the n-th (as far as it is still held).
 */
export class RecentLog<T> {
  private readonly items: T[] = [];
  total = 0;
  private readonly capacity: number;
  constructor(capacity = 32) {
    this.capacity = capacity;
  }

  push(item: T): void {
    this.items.push(item);
    this.total++;
    if (this.items.length > this.capacity) this.items.shift();
  }

  /** Entries after the first `n` ever pushed that are still held. */
  since(n: number): T[] {
    const first = this.total - this.items.length;
    return this.items.slice(Math.max(0, n - first));
  }

  last(): T | undefined {
    return this.items.at(-1);
  }

  get length(): number {
    return this.items.length;
  }
}
