// Logs as kube-proxy writes them (component-base/logs): klog text lines by default,
//   I1201 21:45:00.123456   12345 agent.ts:212] "synced" mode="ebpf" ms=1.2
// and with --logging-format=json one object per line, {"ts":<epoch ms>,"caller":"agent/agent.ts:212",
// "msg":"synced","v":0,...}. pino does the logging; this file only chooses its options and turns
// pino's JSON line into klog's text in a destination stream (as pino-pretty would, in process).
import { writeSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import pino, { type Logger } from 'pino';

export type LogFormat = 'text' | 'json';

export interface LoggerOptions {
  format: LogFormat;
  /** kube-proxy's -v: 0 info, 4 debug, 6 trace. */
  verbosity: number;
  /** Where the lines go (tests capture them); default: stderr, written synchronously. */
  write?: (line: string) => void;
}

/** klog verbosity of pino's numeric levels below warn. */
const VERBOSITY: Record<number, number> = { 10: 6, 20: 4, 30: 0 };
const SEVERITY: Record<number, string> = { 10: 'I', 20: 'I', 30: 'I', 40: 'W', 50: 'E', 60: 'F' };

function levelFor(verbosity: number): 'trace' | 'debug' | 'info' {
  return verbosity >= 6 ? 'trace' : verbosity >= 4 ? 'debug' : 'info';
}

/** The first frame outside pino and this file (a library's, for its own lines): "dir/file.ts:line", as klog's caller. */
function caller(): string {
  const stack = new Error().stack?.split('\n') ?? [];
  for (const frame of stack.slice(1)) {
    const m = /\(?(?:file:\/\/)?([^()\s]+):(\d+):\d+\)?$/.exec(frame.trim());
    if (m === null) continue;
    const file = m[1]!;
    if (file.includes('/node_modules/pino') || /\/cli\/logger\.[jt]s$/.test(file) || file.startsWith('node:')) continue;
    return `${basename(dirname(file))}/${basename(file)}:${m[2]}`;
  }
  return '???:1';
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** klog's header: Lmmdd hh:mm:ss.uuuuuu threadid file:line] */
export function klogHeader(severity: string, epochMs: number, pid: number, file: string): string {
  const d = new Date(Math.floor(epochMs));
  const micros = Math.floor((epochMs % 1000) * 1000);
  return `${severity}${pad(d.getMonth() + 1)}${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(micros, 6)} ${String(pid).padStart(7)} ${file}]`;
}

/** klog's key=value: strings quoted (Go %q), numbers and booleans bare, the rest as JSON. */
function klogValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  if (typeof v === 'object' && v !== null && 'message' in v && typeof (v as { message: unknown }).message === 'string') return JSON.stringify((v as { message: string }).message);
  return JSON.stringify(v);
}

/** pino's JSON line (our options) -> one klog text line. */
export function klogLine(json: string): string {
  const o = JSON.parse(json) as Record<string, unknown>;
  const { ts, level, caller: at, msg, pid, ...fields } = o;
  const file = basename(String(at ?? '???:1'));
  const kv = Object.entries(fields).map(([k, v]) => ` ${k}=${klogValue(v)}`).join('');
  return `${klogHeader(SEVERITY[Number(level)] ?? 'I', Number(ts), Number(pid ?? process.pid), file)} ${JSON.stringify(String(msg ?? ''))}${kv}\n`;
}

/**
 * Synchronous writes to stderr, so nothing is lost at exit; when stderr is a non-blocking pipe
 * whose reader is behind (EAGAIN), the rest goes through process.stderr, which queues it,
 * instead of the error ending the agent.
 */
function writeStderr(line: string): void {
  const bytes = Buffer.from(line);
  let off = 0;
  try {
    while (off < bytes.length) off += writeSync(2, bytes, off);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
    process.stderr.write(bytes.subarray(off));
  }
}

export function createLogger(o: LoggerOptions): Logger {
  const write = o.write ?? writeStderr;
  const json = o.format === 'json';
  return pino(
    {
      level: levelFor(o.verbosity),
      base: json ? null : { pid: process.pid },
      messageKey: 'msg',
      // Epoch milliseconds with microseconds, as component-base's JSON logger writes "ts".
      timestamp: () => `,"ts":${(performance.timeOrigin + performance.now()).toFixed(3)}`,
      mixin: () => ({ caller: caller() }),
      formatters: {
        // JSON: "v" for info-and-below lines (as zapr), none for warnings' and errors' severity
        // beyond what the text shows; text keeps pino's number to pick I/W/E/F.
        level: (_label, number) => (json ? (number <= 30 ? { v: VERBOSITY[number] ?? 0 } : { severity: number >= 50 ? 'error' : 'warning' }) : { level: number }),
      },
      serializers: { err: (e: Error) => e.message, error: (e: unknown) => (e instanceof Error ? e.message : e) },
    },
    { write: json ? write : (line: string) => write(klogLine(line)) },
  );
}
