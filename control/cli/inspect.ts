// switchyard services | backends | conntrack: what the kernel really holds, read from the pinned
// maps (so it works while the agent runs and after it stopped). Table by default, --output json.
// `services` also asks the agent (--agent, its metrics address) what the API wants, and shows
// per frontend whether the kernel agrees; without a reachable agent it shows the kernel alone.
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { perCpu, u32 } from '../bpf/codec.ts';
import { native } from '../bpf/native.ts';
import { BpfMap } from '../bpf/map.ts';
import { backend, counter, ctKey, ctValue, CT, FE, frontendKey, frontendValue, revNat, slotKey } from '../bpf/layout.ts';
import type { CommandIO } from './io.ts';
import { fetchApiFrontends, joinApiView, PROTOCOL_NAMES as PROTO } from '../inspect/api-view.ts';
import { hostPort } from '../model/ip.ts';
import { table } from './table.ts';


function flagNames(flags: number): string {
  const names = Object.entries(FE).filter(([, bit]) => flags & bit).map(([name]) => name.toLowerCase().replace('_', '-'));
  return names.join(',') || '-';
}


function open<K, V>(dir: string, name: string, key: Parameters<typeof BpfMap.fromPin<K, V>>[1], value: Parameters<typeof BpfMap.fromPin<K, V>>[2]): BpfMap<K, V> {
  const path = `${dir}/${name}`;
  if (!existsSync(path)) throw new Error(`${path} is not pinned: is the agent's --bpffs-dir ${dir}?`);
  return BpfMap.fromPin(path, key, value);
}

export async function inspectCommand(what: 'services' | 'backends' | 'conntrack', argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { 'bpffs-dir': { type: 'string', default: '/sys/fs/bpf/switchyard' }, output: { type: 'string', short: 'o', default: 'table' }, agent: { type: 'string', default: 'http://127.0.0.1:10249' } },
    strict: true,
  });
  const dir = values['bpffs-dir'];
  const json = values.output === 'json';
  if (what === 'services') {
    const fe = open(dir, 'sy_frontends', frontendKey, frontendValue);
    const slots = open(dir, 'sy_slots', slotKey, u32);
    const stats = open(dir, 'sy_stats', u32, perCpu(counter, native().numPossibleCpus()));
    const be = open(dir, 'sy_backends', u32, backend);
    const rows = fe.entries().map(([k, v]) => {
      const backends: number[] = [];
      for (let s = 1; s <= v.count; s++) {
        const id = slots.get({ setId: v.setId, slot: s });
        if (id !== undefined) backends.push(id);
      }
      const backendAddresses = backends.map((id) => be.get(id)).filter((b): b is NonNullable<typeof b> => b !== undefined && b.family !== 0).map((b) => hostPort(b.addr, b.port));
      const c = (stats.get(v.serviceId) ?? []).reduce((a, x) => ({ packets: a.packets + x.packets, bytes: a.bytes + x.bytes }), { packets: 0n, bytes: 0n });
      const scope: 'internal' | 'external' = k.scope === 1 ? 'internal' : 'external';
      return { frontend: hostPort(k.addr, k.port), protocol: PROTO[k.proto] ?? String(k.proto), scope, flags: flagNames(v.flags), backends, backendAddresses, affinitySeconds: v.affinityTimeout, algorithm: v.algorithm === 1 ? 'maglev' : 'random', serviceId: v.serviceId, revNatId: v.revNatId, packets: c.packets.toString(), bytes: c.bytes.toString() };
    });
    rows.sort((a, b) => (a.frontend < b.frontend ? -1 : 1));
    fe.close();
    slots.close();
    stats.close();
    be.close();
    const view = values.agent === 'none' ? { error: 'not asked (--agent none)' } : await fetchApiFrontends(values.agent);
    if ('error' in view) {
      if (!json) io.stderr(`the API's view is not shown: ${view.error}; the kernel's alone follows\n`);
      io.stdout(json ? `${JSON.stringify(rows, null, 2)}\n` : `${table(['FRONTEND', 'PROTO', 'SCOPE', 'FLAGS', 'BACKENDS', 'AFFINITY', 'ALGORITHM', 'PACKETS'], rows.map((r) => [r.frontend, r.protocol, r.scope, r.flags, r.backendAddresses.join(',') || '-', r.affinitySeconds ? `${r.affinitySeconds}s` : '-', r.algorithm, r.packets]))}\n`);
      return 0;
    }
    const joined = joinApiView(rows, view.frontends).map((j) => ({
      ...(j.kernel ?? { frontend: j.api!.frontend, protocol: j.api!.protocol, scope: j.api!.scope }),
      servicePort: j.api?.servicePort ?? '',
      api: j.status,
      apiBackends: j.api?.backends ?? [],
    }));
    const dash = (x: string | undefined): string => (x === undefined || x === '' ? '-' : x);
    io.stdout(
      json
        ? `${JSON.stringify(joined, null, 2)}\n`
        : `${table(
            ['FRONTEND', 'PROTO', 'SCOPE', 'FLAGS', 'BACKENDS', 'AFFINITY', 'ALGORITHM', 'PACKETS', 'SERVICE PORT', 'API'],
            joined.map((r) => {
              const k = 'flags' in r ? r : undefined;
              const apiNote = r.api === 'differs' || r.api === 'missing' ? `${r.api}: wants ${r.apiBackends.join(',') || 'none'}` : r.api;
              return [r.frontend, r.protocol, r.scope, dash(k?.flags), dash(k?.backendAddresses.join(',')), k?.affinitySeconds ? `${k.affinitySeconds}s` : '-', dash(k?.algorithm), dash(k?.packets), dash(r.servicePort), apiNote];
            }),
          )}\n`,
    );
    return 0;
  }
  if (what === 'backends') {
    const be = open(dir, 'sy_backends', u32, backend);
    const rows = be.entries().filter(([, b]) => b.family !== 0).map(([id, b]) => ({ id, backend: hostPort(b.addr, b.port), protocol: PROTO[b.proto] ?? String(b.proto), terminating: (b.flags & 1) !== 0, serviceId: b.serviceId })).sort((a, b) => a.id - b.id);
    be.close();
    io.stdout(json ? `${JSON.stringify(rows, null, 2)}\n` : `${table(['ID', 'BACKEND', 'PROTO', 'STATE', 'SERVICE ID'], rows.map((r) => [String(r.id), r.backend, r.protocol, r.terminating ? 'terminating' : 'active', String(r.serviceId)]))}\n`);
    return 0;
  }
  const ct = open(dir, 'sy_ct', ctKey, ctValue);
  const rn = open(dir, 'sy_revnat', u32, revNat);
  const nowNs = process.hrtime.bigint();
  const rows = ct.entries().map(([k, v]) => {
    const found = rn.get(v.revNatId);
    const frontend = found?.family === 0 ? undefined : found;
    return {
      direction: (v.flags & CT.REPLY) !== 0 ? 'reply' : 'forward',
      protocol: PROTO[k.proto] ?? String(k.proto),
      source: hostPort(k.saddr, k.sport),
      destination: hostPort(k.daddr, k.dport),
      frontend: frontend === undefined ? '' : hostPort(frontend.addr, frontend.port),
      backendId: v.backendId,
      snat: (v.flags & CT.SNAT) !== 0 ? hostPort(v.natAddr, v.natPort) : '',
      closing: (v.flags & CT.CLOSING) !== 0,
      idleSeconds: Number((nowNs - v.lastSeen) / 1_000_000_000n),
    };
  });
  ct.close();
  rn.close();
  io.stdout(json ? `${JSON.stringify(rows, null, 2)}\n` : `${table(['DIR', 'PROTO', 'SOURCE', 'DESTINATION', 'FRONTEND', 'BACKEND', 'SNAT', 'STATE', 'IDLE'], rows.map((r) => [r.direction, r.protocol, r.source, r.destination, r.frontend, String(r.backendId), r.snat || '-', r.closing ? 'closing' : 'open', `${r.idleSeconds}s`]))}\n`);
  return 0;
}
