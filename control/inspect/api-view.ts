// The API's view beside the kernel's, for `switchyard services`: the agent serves what it
// compiled from the API (GET /switchyard/frontends on its metrics address) and the inspect
// command joins that with what the pinned maps hold. The join is pure; fetching is the adapter.
import type { CompiledDatapath } from '../backends/ebpf/compile.ts';
import { hostPort } from '../model/ip.ts';

/** IP protocol numbers as the API names them. */
export const PROTOCOL_NAMES: Record<number, string> = { 6: 'TCP', 17: 'UDP', 132: 'SCTP' };

/** One frontend as the agent compiled it from the API. */
export interface ApiFrontend {
  frontend: string;
  protocol: string;
  scope: 'internal' | 'external';
  servicePort: string;
  /** Backends of its set as addr:port, in slot order. */
  backends: string[];
}

/** What /switchyard/frontends answers: the compiled frontends, ordered. */
export function apiFrontends(compiled: CompiledDatapath): ApiFrontend[] {
  const out: ApiFrontend[] = [];
  for (const f of compiled.frontends.values()) {
    const backends = f.backends.map((k) => compiled.backends.get(k)).filter((b) => b !== undefined).map((b) => hostPort(b.addr, b.port));
    out.push({ frontend: hostPort(f.addr, f.port), protocol: PROTOCOL_NAMES[f.proto] ?? String(f.proto), scope: f.scope === 1 ? 'internal' : 'external', servicePort: f.servicePort, backends });
  }
  return out.sort((a, b) => (a.frontend + a.protocol + a.scope < b.frontend + b.protocol + b.scope ? -1 : 1));
}

export interface KernelFrontend {
  frontend: string;
  protocol: string;
  scope: 'internal' | 'external';
  /** Backends the kernel's set holds, as addr:port. */
  backendAddresses: string[];
}

/**
 * in-sync: the kernel holds what the API asks for; differs: other backends; not-in-api: the
 * kernel holds a frontend the API does not (left over, or not yet removed); missing: the API
 * asks for a frontend the kernel does not hold (not yet programmed, or refused: map full).
 */
export type ApiStatus = 'in-sync' | 'differs' | 'not-in-api' | 'missing';

export interface Joined<K> {
  kernel: K | undefined;
  api: ApiFrontend | undefined;
  status: ApiStatus;
}

export function joinApiView<K extends KernelFrontend>(kernel: readonly K[], api: readonly ApiFrontend[]): Array<Joined<K>> {
  const key = (f: { frontend: string; protocol: string; scope: string }): string => `${f.frontend}|${f.protocol}|${f.scope}`;
  const wanted = new Map(api.map((a) => [key(a), a]));
  const out: Array<Joined<K>> = [];
  for (const k of kernel) {
    const a = wanted.get(key(k));
    wanted.delete(key(k));
    const same = a !== undefined && [...a.backends].sort().join(',') === [...k.backendAddresses].sort().join(',');
    out.push({ kernel: k, api: a, status: a === undefined ? 'not-in-api' : same ? 'in-sync' : 'differs' });
  }
  for (const a of wanted.values()) out.push({ kernel: undefined, api: a, status: 'missing' });
  return out;
}

/** The agent's view, or why there is none (not running, another mode, unreachable). */
export async function fetchApiFrontends(baseUrl: string, timeoutMs = 2000): Promise<{ frontends: ApiFrontend[] } | { error: string }> {
  try {
    const r = await fetch(new URL('/switchyard/frontends', baseUrl), { signal: AbortSignal.timeout(timeoutMs) });
    if (!r.ok) return { error: `${baseUrl} answered ${r.status}` };
    return { frontends: (await r.json()) as ApiFrontend[] };
  } catch (e) {
    return { error: `${baseUrl} not reachable: ${(e as Error).cause instanceof Error ? ((e as Error).cause as Error).message : (e as Error).message}` };
  }
}
