// Typed errors for everything that crosses into the kernel through the addon.

/** Fields the addon sets on the errors it throws (see native/errors.cc). */
interface NativeErrorFields {
  name?: unknown;
  op?: unknown;
  errno?: unknown;
  code?: unknown;
  detail?: unknown;
  libbpfLog?: unknown;
}

/** A kernel or libbpf call failed: `op` is the call, `errno`/`code` say why. */
export class BpfError extends Error {
  readonly op: string;
  readonly errno: number;
  readonly code: string;
  readonly detail: string | undefined;
  readonly libbpfLog: string | undefined;

  constructor(message: string, op: string, errno: number, code: string, detail?: string, libbpfLog?: string) {
    super(message);
    this.name = new.target.name;
    this.op = op;
    this.errno = errno;
    this.code = code;
    this.detail = detail;
    this.libbpfLog = libbpfLog;
  }
}

/** The object file to load does not exist or cannot be read. */
export class ObjectFileError extends BpfError {}

/** The verifier refused a program; `verifierLog` holds its explanation. */
export class VerifierError extends BpfError {
  readonly verifierLog: string;

  constructor(base: BpfError, verifierLog: string) {
    super(base.message, base.op, base.errno, base.code, base.detail, base.libbpfLog);
    this.verifierLog = verifierLog;
  }
}

/** The named interface (or network namespace) does not exist. */
export class InterfaceNotFoundError extends BpfError {}

/** A map refused an entry because it is full. */
export class MapFullError extends BpfError {}

/** The directory meant for pins is not on a BPF filesystem. */
export class BpffsMissingError extends Error {
  readonly path: string;

  constructor(path: string, reason: string) {
    super(
      `${path} is not on a BPF filesystem (${reason}); mount one with "mount -t bpf bpf /sys/fs/bpf" ` +
        'or choose a directory below a bpffs mount',
    );
    this.name = 'BpffsMissingError';
    this.path = path;
  }
}

const LOG_BEGIN = '-- BEGIN PROG LOAD LOG --';
const LOG_END = '-- END PROG LOAD LOG --';

/** Extracts the verifier's own words from libbpf's log of a failed load. */
export function extractVerifierLog(libbpfLog: string): string | undefined {
  const begin = libbpfLog.indexOf(LOG_BEGIN);
  if (begin < 0) return undefined;
  const end = libbpfLog.indexOf(LOG_END, begin);
  return libbpfLog.slice(begin + LOG_BEGIN.length, end < 0 ? undefined : end).trim();
}

function isNativeError(e: unknown): e is Error & NativeErrorFields {
  return e instanceof Error && (e as NativeErrorFields).name === 'BpfError';
}

/** Turns an error thrown by the addon into the most specific typed error. */
export function toTypedError(e: unknown): unknown {
  if (!isNativeError(e)) return e;
  const op = String(e.op);
  const errno = Number(e.errno);
  const code = String(e.code);
  const detail = typeof e.detail === 'string' ? e.detail : undefined;
  const log = typeof e.libbpfLog === 'string' ? e.libbpfLog : undefined;
  const base = new BpfError(e.message, op, errno, code, detail, log);
  if (op === 'bpf_object__open_file') {
    // The file exists but libbpf cannot use it: its last log line says why (e.g. a missing extern).
    const why = log?.trim().split('\n').at(-1);
    return new ObjectFileError(why ? `${e.message}: ${why.replace(/^libbpf: /, '')}` : e.message, op, errno, code, detail, log);
  }
  if (op === 'bpf_object__load' && log !== undefined) {
    const verifierLog = extractVerifierLog(log);
    if (verifierLog !== undefined) return new VerifierError(base, verifierLog);
  }
  if ((code === 'ENODEV' || code === 'ENOENT') && detail !== undefined && /^(interface|network namespace) /.test(detail)) {
    return new InterfaceNotFoundError(e.message, op, errno, code, detail, log);
  }
  if (code === 'E2BIG' && op.startsWith('bpf_map_update')) {
    return new MapFullError(e.message, op, errno, code, detail, log);
  }
  return base;
}

/** Calls into the addon, rethrowing its errors typed. */
export function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw toTypedError(e);
  }
}

/** `call` for a native promise: its rejection becomes the typed error. */
export async function callAsync<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw toTypedError(e);
  }
}
