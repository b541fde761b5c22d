// Taking over from a running kube-proxy (or Switchyard in a rule mode) without breaking a flow.
//
// Kernel conntrack keeps the NAT of every flow kube-proxy's iptables or nftables rules translated:
// once a flow is tracked, netfilter translates its packets from the conntrack entry, not from the
// rules. So those flows need no rule once they are open, only a datapath that leaves them alone:
// at start the eBPF agent reads the conntrack table, and for each flow DNATed to an endpoint of a
// frontend it programs writes both directions into its own connection tracking marked SY_CT_HOST
// (tc then hands their packets to netfilter untouched, and their tuples are not given to new
// flows), before its programs are attached. New flows take the eBPF path; the old rules can go.
//
// Translating these flows in eBPF instead (seeding entries that rewrite) would not keep them: the
// host's conntrack would see the client's packets, now addressed to the endpoint, as a new flow
// whose reply tuple is the old flow's, and netfilter's NAT would resolve that clash by moving the
// new flow to another source port, which the endpoint knows nothing of.
import { CT, IPPROTO, SCOPE, type CtKey, type CtValue, type FrontendKey } from '../../bpf/layout.ts';
import { formatIpv6, ipv6Bytes } from '../../bpf/codec.ts';
import type { ToolRunner } from '../tool-runner.ts';

export interface FlowTuple {
  src: string;
  dst: string;
  sport: number;
  dport: number;
}

/** One flow of kernel conntrack, as `conntrack -L -o extended` lists it. */
export interface KernelFlow {
  family: 4 | 6;
  proto: number;
  /** TCP's state (ESTABLISHED, FIN_WAIT, ...); undefined for UDP. */
  state?: string;
  /** Not answered yet ([UNREPLIED]). */
  unreplied: boolean;
  orig: FlowTuple;
  reply: FlowTuple;
}

/** An IPv6 address in one spelling (conntrack and the API may write it differently). */
export function canonicalAddress(a: string): string {
  return a.includes(':') ? formatIpv6(ipv6Bytes(a)) : a;
}

/** Pure: the TCP and UDP flows of `conntrack -L -o extended` output; other lines are skipped. */
export function parseConntrack(text: string): KernelFlow[] {
  const out: KernelFlow[] = [];
  for (const line of text.split('\n')) {
    const w = line.trim().split(/\s+/);
    const family = w[0] === 'ipv4' ? 4 : w[0] === 'ipv6' ? 6 : undefined;
    const proto = w[2] === 'tcp' ? IPPROTO.TCP : w[2] === 'udp' ? IPPROTO.UDP : undefined;
    if (family === undefined || proto === undefined) continue;
    const pairs: Array<[string, string]> = [];
    for (const t of w) {
      const eq = t.indexOf('=');
      if (eq > 0) pairs.push([t.slice(0, eq), t.slice(eq + 1)]);
    }
    const tuples: FlowTuple[] = [];
    let cur: Partial<FlowTuple> = {};
    for (const [k, v] of pairs) {
      if (k === 'src') cur.src = canonicalAddress(v);
      else if (k === 'dst') cur.dst = canonicalAddress(v);
      else if (k === 'sport') cur.sport = Number(v);
      else if (k === 'dport') {
        cur.dport = Number(v);
        if (cur.src !== undefined && cur.dst !== undefined && cur.sport !== undefined) tuples.push(cur as FlowTuple);
        cur = {};
      }
    }
    if (tuples.length < 2) continue;
    // tcp lines: "ipv4 2 tcp 6 TIMEOUT STATE src=..."; udp lines have no state.
    const state = proto === IPPROTO.TCP && w[5] !== undefined && !w[5].includes('=') ? w[5] : undefined;
    out.push({ family, proto, state, unreplied: w.includes('[UNREPLIED]'), orig: tuples[0]!, reply: tuples[1]! });
  }
  return out;
}

/** A programmed frontend as the takeover sees it (EbpfDatapath.frontendsWithBackends). */
export interface TakeoverFrontend {
  key: FrontendKey;
  revNatId: number;
  serviceId: number;
  backends: ReadonlyArray<{ id: number; addr: string; port: number }>;
}

export interface SeedEntry {
  table: 'sy_ct' | 'sy_ct_any';
  key: CtKey;
  value: CtValue;
}

/** TCP states whose flow still carries data; TIME_WAIT and CLOSE are over (a new SYN opens a new flow). */
const OPEN_TCP = new Set(['SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'CLOSING']);
const CLOSING_TCP = new Set(['FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'CLOSING']);

/**
 * Pure: the connection tracking entries (both directions) for each kernel flow translated to a
 * backend of a programmed frontend: its original destination is the frontend, its reply source
 * a backend of the frontend's service port. Flows that are not (untranslated, or to an endpoint
 * this agent does not know) are left out: they are not a proxy's, or have nowhere to stay.
 */
export function planSeed(flows: readonly KernelFlow[], frontends: readonly TakeoverFrontend[], now: bigint): SeedEntry[] {
  const byAddr = new Map<string, TakeoverFrontend>();
  for (const f of frontends) {
    const k = `${canonicalAddress(f.key.addr)}|${f.key.port}|${f.key.proto}`;
    // Either scope names the same service port; internal first (it is what pods reach).
    if (!byAddr.has(k) || f.key.scope === SCOPE.INTERNAL) byAddr.set(k, f);
  }
  const out: SeedEntry[] = [];
  for (const fl of flows) {
    if (fl.proto === IPPROTO.TCP && (fl.state === undefined || !OPEN_TCP.has(fl.state))) continue;
    const fe = byAddr.get(`${fl.orig.dst}|${fl.orig.dport}|${fl.proto}`);
    if (fe === undefined) continue;
    const be = fe.backends.find((b) => canonicalAddress(b.addr) === fl.reply.src && b.port === fl.reply.sport);
    if (be === undefined) continue;
    const snat = fl.reply.dst !== fl.orig.src || fl.reply.dport !== fl.orig.sport;
    let state: number = CT.HOST;
    if (fl.proto === IPPROTO.TCP) {
      if (fl.state !== 'SYN_SENT' && fl.state !== 'SYN_RECV') state |= CT.ESTABLISHED;
      if (CLOSING_TCP.has(fl.state!)) state |= CT.CLOSING;
    } else if (!fl.unreplied) {
      state |= CT.ESTABLISHED;
    }
    const table = fl.proto === IPPROTO.TCP ? 'sy_ct' : 'sy_ct_any';
    const zero = fl.family === 4 ? '0.0.0.0' : '::';
    const ids = { backendId: be.id, revNatId: fe.revNatId, serviceId: fe.serviceId, created: now, lastSeen: now };
    out.push({
      table,
      key: { saddr: fl.orig.src, daddr: fl.orig.dst, sport: fl.orig.sport, dport: fl.orig.dport, proto: fl.proto, family: fl.family },
      value: { natAddr: snat ? fl.reply.dst : zero, natPort: snat ? fl.reply.dport : 0, flags: state | (snat ? CT.SNAT : 0), ...ids },
    });
    out.push({
      table,
      key: { saddr: fl.reply.src, daddr: fl.reply.dst, sport: fl.reply.sport, dport: fl.reply.dport, proto: fl.proto, family: fl.family },
      value: { natAddr: fl.orig.src, natPort: fl.orig.sport, flags: state | CT.REPLY | (snat ? CT.SNAT : 0), ...ids },
    });
  }
  return out;
}

/** Kernel conntrack's flows of both families; undefined (with why) when the tool cannot list them. */
export async function listKernelFlows(run: ToolRunner): Promise<{ flows: KernelFlow[] } | { error: string }> {
  const flows: KernelFlow[] = [];
  for (const family of ['ipv4', 'ipv6']) {
    const r = await run('conntrack', ['-L', '-f', family, '-o', 'extended']);
    if (!r.ok) return { error: r.out.trim() || 'conntrack -L failed' };
    flows.push(...parseConntrack(r.out));
  }
  return { flows };
}
