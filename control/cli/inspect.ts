// switchyard services | backends | conntrack: what the kernel really holds, read from the pinned
// maps (so it works while the agent runs and after it stopped). This file reads the maps into
// rows; control/inspect/format.ts lays them out. `services` also asks the agent (--agent, its
// metrics address) what the API wants, and shows per frontend whether the kernel agrees.
import { perCpu, u32, u64 } from '../bpf/codec.ts';
import { CT_TABLES } from '../backends/ebpf/datapath.ts';
import { native } from '../bpf/native.ts';
import { BpfMap } from '../bpf/map.ts';
import { backend, counter, ctKey, ctValue, CT, DROP_REASONS, FE, frontendKey, frontendValue, revNat, slotKey } from '../bpf/layout.ts';
import type { CommandIO } from './io.ts';
import { fetchApiFrontends, joinApiView, PROTOCOL_NAMES as PROTO } from '../inspect/api-view.ts';
import { renderBackends, renderDrops, renderFlows, renderServices, selectFlows, type FlowRow, type FlowSort, type Output, type ServiceRow } from '../inspect/format.ts';
import { hostPort } from '../model/ip.ts';
import { command, commandHelp } from './commands.ts';
import { explain, pinProblem } from './explain.ts';
import { FlagError, parseFlags } from './flags.ts';

function flagNames(flags: number): string {
  const names = Object.entries(FE).filter(([, bit]) => flags & bit).map(([name]) => name.toLowerCase().replace('_', '-'));
  return names.join(',') || '-';
}

function open<K, V>(dir: string, name: string, key: Parameters<typeof BpfMap.fromPin<K, V>>[1], value: Parameters<typeof BpfMap.fromPin<K, V>>[2]): BpfMap<K, V> {
  const path = `${dir}/${name}`;
  const problem = pinProblem(dir, path);
  if (problem !== undefined) throw new Error(problem);
  try {
    return BpfMap.fromPin(path, key, value);
  } catch (e) {
    throw new Error(`opening ${path}: ${explain(e)}`);
  }
}

function readServices(dir: string): ServiceRow[] {
  const fe = open(dir, 'sy_frontends', frontendKey, frontendValue);
  const slots = open(dir, 'sy_slots', slotKey, u32);
  const stats = open(dir, 'sy_stats', u32, perCpu(counter, native().numPossibleCpus()));
  const be = open(dir, 'sy_backends', u32, backend);
  try {
    return fe.entries().map(([k, v]) => {
      const backends: number[] = [];
      for (let s = 1; s <= v.count; s++) {
        const id = slots.get({ setId: v.setId, slot: s });
        if (id !== undefined) backends.push(id);
      }
      const known = backends.map((id) => be.get(id)).filter((b): b is NonNullable<typeof b> => b !== undefined && b.family !== 0);
      const c = (stats.get(v.serviceId) ?? []).reduce((a, x) => ({ packets: a.packets + x.packets, bytes: a.bytes + x.bytes }), { packets: 0n, bytes: 0n });
      return {
        frontend: hostPort(k.addr, k.port),
        protocol: PROTO[k.proto] ?? String(k.proto),
        scope: k.scope === 1 ? 'internal' : 'external',
        flags: flagNames(v.flags),
        backends,
        backendAddresses: known.map((b) => hostPort(b.addr, b.port)),
        backendStates: known.map((b) => ((b.flags & 1) !== 0 ? 'terminating' : 'active')),
        affinitySeconds: v.affinityTimeout,
        algorithm: v.algorithm === 1 ? 'maglev' : 'random',
        serviceId: v.serviceId,
        revNatId: v.revNatId,
        packets: c.packets.toString(),
        bytes: c.bytes.toString(),
      } satisfies ServiceRow;
    });
  } finally {
    fe.close();
    slots.close();
    stats.close();
    be.close();
  }
}

function readFlows(dir: string): FlowRow[] {
  const tables = CT_TABLES.map((name) => open(dir, name, ctKey, ctValue));
  const rn = open(dir, 'sy_revnat', u32, revNat);
  const be = open(dir, 'sy_backends', u32, backend);
  const nowNs = process.hrtime.bigint();
  try {
    return tables.flatMap((t) => t.entries()).map(([k, v]) => {
      const found = rn.get(v.revNatId);
      const frontend = found?.family === 0 ? undefined : found;
      const b = be.get(v.backendId);
      return {
        direction: (v.flags & CT.REPLY) !== 0 ? 'reply' : 'forward',
        protocol: PROTO[k.proto] ?? String(k.proto),
        source: hostPort(k.saddr, k.sport),
        destination: hostPort(k.daddr, k.dport),
        frontend: frontend === undefined ? '' : hostPort(frontend.addr, frontend.port),
        backendId: v.backendId,
        backend: b === undefined || b.family === 0 ? '' : hostPort(b.addr, b.port),
        nat: (v.flags & CT.SNAT) !== 0 || (v.flags & CT.REPLY) !== 0 ? hostPort(v.natAddr, v.natPort) : '',
        snat: (v.flags & CT.SNAT) !== 0,
        closing: (v.flags & CT.CLOSING) !== 0,
        idleSeconds: Math.max(0, Number((nowNs - v.lastSeen) / 1_000_000_000n)),
      } satisfies FlowRow;
    });
  } finally {
    for (const t of tables) t.close();
    rn.close();
    be.close();
  }
}

export async function inspectCommand(what: 'services' | 'backends' | 'conntrack' | 'drops', argv: string[], io: CommandIO): Promise<number> {
  const spec = command(what);
  const { values, args } = parseFlags(argv, spec.flags);
  if (values.get('help') === true) {
    io.stdout(commandHelp(spec));
    return 0;
  }
  if (args.length > 0) throw new FlagError(`unexpected argument "${args[0]}"`);
  const dir = (values.get('bpffs-dir') as string | undefined) ?? '/sys/fs/bpf/switchyard';
  const output = (values.get('output') as Output | undefined) ?? 'table';
  if (what === 'services') {
    const rows = readServices(dir);
    const agent = (values.get('agent') as string | undefined) ?? 'http://127.0.0.1:10249';
    const view = agent === 'none' ? { error: 'not asked (--agent none)' } : await fetchApiFrontends(agent);
    if ('error' in view) {
      if (output === 'table') io.stderr(`the API's view is not shown: ${view.error}; the kernel's alone follows\n`);
      io.stdout(renderServices(rows, output, false));
      return 0;
    }
    const joined = joinApiView(rows, view.frontends).map((j): ServiceRow => ({
      ...(j.kernel ?? { frontend: j.api!.frontend, protocol: j.api!.protocol, scope: j.api!.scope, flags: '-', backends: [], backendAddresses: [], backendStates: [], affinitySeconds: 0, algorithm: '', serviceId: 0, revNatId: 0, packets: '0', bytes: '0' }),
      servicePort: j.api?.servicePort ?? '',
      api: j.status,
      apiBackends: j.api?.backends ?? [],
    }));
    io.stdout(renderServices(joined, output, true));
    return 0;
  }
  if (what === 'drops') {
    const drops = open(dir, 'sy_drops', u32, perCpu(u64, native().numPossibleCpus()));
    try {
      io.stdout(renderDrops(DROP_REASONS.map((reason, i) => ({ reason, packets: (drops.get(i) ?? []).reduce((a, b) => a + b, 0n).toString() })), output));
    } finally {
      drops.close();
    }
    return 0;
  }
  if (what === 'backends') {
    const be = open(dir, 'sy_backends', u32, backend);
    const rows = be.entries().filter(([, b]) => b.family !== 0).map(([id, b]) => ({ id, backend: hostPort(b.addr, b.port), protocol: PROTO[b.proto] ?? String(b.proto), terminating: (b.flags & 1) !== 0, serviceId: b.serviceId }));
    be.close();
    io.stdout(renderBackends(rows, output));
    return 0;
  }
  const all = readFlows(dir);
  const shown = selectFlows(all, {
    service: values.get('service') as string | undefined,
    backend: values.get('backend') as string | undefined,
    proto: values.get('proto') as string | undefined,
    sort: values.get('sort') as FlowSort | undefined,
    limit: values.get('limit') as number | undefined,
  });
  io.stdout(renderFlows(shown, output, all.length));
  return 0;
}
