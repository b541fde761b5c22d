// What `switchyard services | backends | conntrack` print, from rows read out of the pinned maps.
// Laid out for a person, as `cilium-dbg service list` and `ipvsadm -Ln` are: one line per
// frontend with its backends by address:port beneath it, each service's packet totals once,
// addresses in numeric order, translations spelled out. Ids appear only in -o json / yaml. Pure.
import { stringify } from 'yaml';
import { canonicalIp, ipToBigInt } from '../model/ip.ts';
import type { ApiStatus } from './api-view.ts';

export type Output = 'table' | 'json' | 'yaml';

/** A frontend of the kernel's maps (and, when the agent answered, the API's view of it). */
export interface ServiceRow {
  frontend: string;
  protocol: string;
  scope: 'internal' | 'external';
  flags: string;
  /** Backend ids of its set, in slot order. */
  backends: number[];
  backendAddresses: string[];
  /** active | terminating, per backend. */
  backendStates: string[];
  affinitySeconds: number;
  algorithm: string;
  serviceId: number;
  revNatId: number;
  /** The service's counters (shared by all its frontends). */
  packets: string;
  bytes: string;
  servicePort?: string;
  api?: ApiStatus;
  apiBackends?: string[];
}

export interface BackendRow {
  id: number;
  backend: string;
  protocol: string;
  terminating: boolean;
  serviceId: number;
}

/** One conntrack entry: the kernel keeps one per direction of a translated flow. */
export interface FlowRow {
  direction: 'forward' | 'reply';
  protocol: string;
  /** The tuple as the packet arrives. */
  source: string;
  destination: string;
  /** The service address:port the flow went through ("" when its rev-NAT entry is gone). */
  frontend: string;
  backendId: number;
  /** The backend as address:port ("" when its entry is gone). */
  backend: string;
  /** forward with SNAT: the new source; reply: the client the answer goes back to. */
  nat: string;
  snat: boolean;
  closing: boolean;
  idleSeconds: number;
}

/** "10.0.0.1:80" / "[fd00::1]:80" / "10.0.0.1" -> a sort key: family, address, port. */
function hostPortKey(text: string): [number, bigint, number] {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text);
  const ip = m === null ? undefined : canonicalIp(m[1]!);
  if (ip === undefined) return [9, 0n, 0];
  return [ip.includes(':') ? 6 : 4, ipToBigInt(ip), m?.[2] === undefined ? 0 : Number(m[2])];
}

/** Numeric order of addresses (IPv4 before IPv6), then ports. */
export function compareHostPort(a: string, b: string): number {
  const x = hostPortKey(a);
  const y = hostPortKey(b);
  if (x[0] !== y[0]) return x[0] - y[0];
  if (x[1] !== y[1]) return x[1] < y[1] ? -1 : 1;
  return x[2] - y[2];
}

export function compareServiceRows(a: ServiceRow, b: ServiceRow): number {
  return compareHostPort(a.frontend, b.frontend) || a.protocol.localeCompare(b.protocol) || a.scope.localeCompare(b.scope);
}

function columns(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (c ?? '').padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)];
}

const dash = (s: string | undefined): string => (s === undefined || s === '' ? '-' : s);

function machine(value: unknown, output: Output): string {
  return output === 'json' ? `${JSON.stringify(value, null, 2)}\n` : stringify(value);
}

/** The fields in one order, whatever order the row was built in (machine output is compared). */
function serviceRecord(r: ServiceRow): ServiceRow {
  const { frontend, protocol, scope, flags, backends, backendAddresses, backendStates, affinitySeconds, algorithm, serviceId, revNatId, packets, bytes, servicePort, api, apiBackends } = r;
  const out: ServiceRow = { frontend, protocol, scope, flags, backends, backendAddresses, backendStates, affinitySeconds, algorithm, serviceId, revNatId, packets, bytes };
  if (api !== undefined) Object.assign(out, { servicePort: servicePort ?? '', api, apiBackends: apiBackends ?? [] });
  return out;
}

function flowRecord(r: FlowRow): FlowRow {
  const { direction, protocol, source, destination, frontend, backendId, backend, nat, snat, closing, idleSeconds } = r;
  return { direction, protocol, source, destination, frontend, backendId, backend, nat, snat, closing, idleSeconds };
}

/**
 * services: each frontend with its backends beneath (ipvsadm's "->" lines), then one line per
 * service with its packet and byte totals. `withApi`: the agent's view was joined in.
 */
export function renderServices(input: readonly ServiceRow[], output: Output, withApi: boolean): string {
  const rows = [...input].sort(compareServiceRows);
  if (output !== 'table') return machine(rows.map(serviceRecord), output);
  const header = ['FRONTEND', 'PROTO', 'SCOPE', 'FLAGS', 'AFFINITY', 'ALGORITHM', 'SERVICE', ...(withApi ? ['SERVICE PORT', 'API'] : [])];
  const serviceName = (r: ServiceRow): string => (r.serviceId === 0 ? '-' : `#${r.serviceId}`);
  const cells = rows.map((r) => {
    const api = r.api === 'differs' || r.api === 'missing' ? `${r.api}: wants ${(r.apiBackends ?? []).join(',') || 'none'}` : (r.api ?? '');
    return [r.frontend, r.protocol, r.scope, r.flags, r.affinitySeconds > 0 ? `${r.affinitySeconds}s` : '-', dash(r.algorithm), serviceName(r), ...(withApi ? [dash(r.servicePort), api] : [])];
  });
  const [head, ...lines] = columns(header, cells);
  const out = [head!];
  rows.forEach((r, i) => {
    out.push(lines[i]!);
    const backends = r.backendAddresses.map((a, j) => ({ a, state: r.backendStates[j] ?? 'active' })).sort((x, y) => compareHostPort(x.a, y.a));
    if (backends.length === 0 && r.api !== 'missing') out.push('  -> (no backends)');
    for (const b of backends) out.push(`  -> ${b.a}${b.state === 'active' ? '' : `  (${b.state})`}`);
  });
  // Totals once per service: every frontend of a service shares its counters.
  const services = new Map<number, { name: string; frontends: number; packets: string; bytes: string }>();
  for (const r of rows) {
    if (r.serviceId === 0) continue;
    const s = services.get(r.serviceId) ?? { name: r.servicePort ?? '', frontends: 0, packets: r.packets, bytes: r.bytes };
    s.frontends++;
    if (s.name === '' && r.servicePort !== undefined) s.name = r.servicePort;
    services.set(r.serviceId, s);
  }
  if (services.size > 0) {
    const totals = [...services.entries()].sort(([a], [b]) => a - b).map(([id, s]) => [`#${id}`, ...(withApi ? [dash(s.name)] : []), String(s.frontends), s.packets, s.bytes]);
    out.push('', ...columns(['SERVICE', ...(withApi ? ['SERVICE PORT'] : []), 'FRONTENDS', 'PACKETS', 'BYTES'], totals));
  }
  return `${out.join('\n')}\n`;
}

export function renderBackends(input: readonly BackendRow[], output: Output): string {
  const rows = [...input].sort((a, b) => compareHostPort(a.backend, b.backend) || a.protocol.localeCompare(b.protocol) || a.id - b.id);
  if (output !== 'table') return machine(rows, output);
  return `${columns(['BACKEND', 'PROTO', 'STATE', 'SERVICE'], rows.map((r) => [r.backend, r.protocol, r.terminating ? 'terminating' : 'active', `#${r.serviceId}`])).join('\n')}\n`;
}

export interface DropRow {
  reason: string;
  /** A decimal string: counters are 64-bit. */
  packets: string;
}

/** Drops by reason in the datapath's order (table: the reasons that dropped something first). */
export function renderDrops(rows: readonly DropRow[], output: Output): string {
  if (output !== 'table') return machine(rows, output);
  const sorted = [...rows].sort((a, b) => (BigInt(b.packets) > BigInt(a.packets) ? 1 : BigInt(b.packets) < BigInt(a.packets) ? -1 : 0));
  return `${columns(['REASON', 'PACKETS'], sorted.map((r) => [r.reason, r.packets])).join('\n')}\n`;
}

export type FlowSort = 'idle' | 'source' | 'destination' | 'backend' | 'frontend';

export interface FlowFilter {
  /** A frontend: "ip" or "ip:port". */
  service?: string;
  /** A backend: "ip" or "ip:port". */
  backend?: string;
  /** tcp | udp | sctp */
  proto?: string;
  sort?: FlowSort;
  /** At most this many rows (0 or undefined: all). */
  limit?: number;
}

/** "ip" matches any port of that address; "ip:port" that one. */
function matchesAddress(value: string, wanted: string): boolean {
  if (value === '') return false;
  const v = hostPortKey(value);
  const w = hostPortKey(wanted);
  return v[0] === w[0] && v[1] === w[1] && (w[2] === 0 || v[2] === w[2]);
}

export function selectFlows(rows: readonly FlowRow[], f: FlowFilter): FlowRow[] {
  const picked = rows.filter(
    (r) =>
      (f.service === undefined || matchesAddress(r.frontend, f.service)) &&
      (f.backend === undefined || matchesAddress(r.backend, f.backend)) &&
      (f.proto === undefined || r.protocol.toLowerCase() === f.proto.toLowerCase()),
  );
  const by: Record<FlowSort, (a: FlowRow, b: FlowRow) => number> = {
    idle: (a, b) => a.idleSeconds - b.idleSeconds,
    source: (a, b) => compareHostPort(a.source, b.source),
    destination: (a, b) => compareHostPort(a.destination, b.destination),
    backend: (a, b) => compareHostPort(a.backend, b.backend),
    frontend: (a, b) => compareHostPort(a.frontend, b.frontend),
  };
  // Ties fall back to the tuple, so the order never depends on the map's.
  const order = by[f.sort ?? 'idle'];
  picked.sort((a, b) => order(a, b) || compareHostPort(a.source, b.source) || compareHostPort(a.destination, b.destination) || a.direction.localeCompare(b.direction));
  return f.limit !== undefined && f.limit > 0 ? picked.slice(0, f.limit) : picked;
}

/** What the datapath does to packets of this entry, in words. */
export function translation(r: FlowRow): string {
  if (r.direction === 'forward') {
    const to = `to backend ${r.backend === '' ? `#${r.backendId} (gone)` : r.backend}`;
    return r.snat ? `${to}, source rewritten to ${r.nat} (SNAT)` : to;
  }
  const from = `source rewritten to ${r.frontend === '' ? 'the service (entry gone)' : r.frontend}`;
  return r.nat !== '' && r.nat !== r.destination ? `${from}, destination back to client ${r.nat}` : from;
}

export function renderFlows(rows: readonly FlowRow[], output: Output, total: number): string {
  if (output !== 'table') return machine(rows.map(flowRecord), output);
  const cells = rows.map((r) => [r.direction === 'forward' ? 'request' : 'reply', r.protocol, r.source, r.destination, dash(r.frontend), translation(r), r.closing ? 'closing' : 'open', `${r.idleSeconds}s`]);
  const out = columns(['DIRECTION', 'PROTO', 'SOURCE', 'DESTINATION', 'SERVICE', 'TRANSLATION', 'STATE', 'IDLE'], cells);
  if (rows.length < total) out.push(`(${rows.length} of ${total} entries shown)`);
  return `${out.join('\n')}\n`;
}
