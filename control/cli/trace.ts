// switchyard trace --src IP --dst IP:PORT --proto tcp|udp|sctp [--manifests DIR | --kubeconfig F]
// The verdict for one packet on this node, from the same desired state the backends compile.
import { hostname } from 'node:os';
import { canonicalIp, hostPort } from '../model/ip.ts';
import type { Protocol } from '../model/types.ts';
import { trace, type TracePacket, type TraceVerdict } from '../trace/trace.ts';
import { modelConfigFromFlags } from './model-flags.ts';
import { snapshot, type SnapshotFacts } from './snapshot.ts';
import { command, commandHelp } from './commands.ts';
import { FlagError, parseFlags } from './flags.ts';
import { resolveSource } from './preflight.ts';
import { table } from './table.ts';
import type { CommandIO } from './io.ts';

/** "1.2.3.4:80" or "[fd00::1]:80". */
export function parseHostPort(text: string): { ip: string; port: number } | undefined {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  if (m === null) return undefined;
  const ip = canonicalIp(m[1]!);
  const port = Number(m[2]);
  if (ip === undefined || port < 1 || port > 65535) return undefined;
  return { ip, port };
}

export function formatVerdict(packet: TracePacket, v: TraceVerdict): string {
  const head = `packet   ${packet.src} -> ${packet.dst.includes(':') ? `[${packet.dst}]` : packet.dst}:${packet.port}/${packet.protocol}`;
  if (v.verdict === 'NO_SERVICE') return `${head}\nverdict  NO_SERVICE (${v.reason}): the packet passes untouched`;
  if ('unallocated' in v) return `${head}  (source: ${v.source})\nservice  none  [service CIDR ${v.serviceCIDR}]\nverdict  DROP  (${v.reason})`;
  const lines = [
    `${head}  (source: ${v.source})`,
    `service  ${v.servicePort}  [${v.frontend.kind} ${v.frontend.address}:${v.frontend.port}]`,
    `verdict  ${v.verdict}  (${v.reason})`,
  ];
  if (v.verdict !== 'FORWARD') return lines.join('\n');
  lines.push(`policy   ${v.policy}   affinity ${v.affinityTimeoutSeconds > 0 ? `ClientIP ${v.affinityTimeoutSeconds}s` : 'none'}   algorithm ${v.algorithm}`);
  lines.push(
    table(
      ['ENDPOINT', 'NODE', 'LOCAL', 'WEIGHT', 'SOURCE SEEN'],
      v.endpoints.map((e) => [
        hostPort(e.ip, e.port),
        e.nodeName || '-',
        e.local ? 'yes' : 'no',
        `${(e.weight * 100).toFixed(1)}%`,
        e.sourceTranslated ? 'node (SNAT)' : 'client',
      ]),
    ),
  );
  return lines.join('\n');
}

/**
 * A clearer reason where the model's is true but not the whole story: endpoints exist for the
 * service, only under other port names (the Service's port name and the slices' must match).
 */
export function explainNoEndpoints(v: TraceVerdict, facts: SnapshotFacts): TraceVerdict {
  if (v.verdict !== 'REJECT' || v.reason !== 'service has no endpoints') return v;
  const colon = v.servicePort.lastIndexOf(':');
  const service = colon < 0 ? v.servicePort : v.servicePort.slice(0, colon);
  const portName = colon < 0 ? '' : v.servicePort.slice(colon + 1);
  const names = facts.slicePortNames.get(service);
  if (names === undefined || names.size === 0 || names.has(portName)) return v;
  const shown = [...names].map((n) => (n === '' ? '(unnamed)' : `"${n}"`)).join(', ');
  return { ...v, reason: `port name mismatch: the service port is named ${portName === '' ? '(unnamed)' : `"${portName}"`}, but its EndpointSlices only have ports ${shown}` };
}

export async function traceCommand(argv: string[], io: CommandIO): Promise<number> {
  const spec = command('trace');
  const { values: flags, args } = parseFlags(argv, spec.flags);
  if (flags.get('help') === true) {
    io.stdout(commandHelp(spec));
    return 0;
  }
  if (args.length > 0) throw new FlagError(`unexpected argument "${args[0]}"`);
  const text = (name: string): string | undefined => flags.get(name) as string | undefined;
  const joined = (name: string): string | undefined => (flags.get(name) as string[] | undefined)?.join(',');
  const src = text('src') === undefined ? undefined : canonicalIp(text('src')!);
  const dst = text('dst') === undefined ? undefined : parseHostPort(text('dst')!);
  if (text('src') === undefined || text('dst') === undefined) throw new FlagError('--src and --dst are required');
  const bad = [src === undefined ? `--src: "${text('src')}" is not an IP address` : '', dst === undefined ? `--dst: "${text('dst')}" is not IP:PORT (or [IPv6]:PORT)` : ''].filter((m) => m !== '');
  if (bad.length > 0 || src === undefined || dst === undefined) throw new FlagError(bad.join('; '));
  const protocol = (text('proto') ?? 'tcp').toUpperCase() as Protocol;
  const output = text('output') ?? 'table';
  const config = modelConfigFromFlags({
    'cluster-cidr': joined('cluster-cidr'),
    'detect-local-mode': text('detect-local-mode'),
    'pod-bridge-interface': text('pod-bridge-interface'),
    'pod-interface-name-prefix': text('pod-interface-name-prefix'),
    'nodeport-addresses': joined('nodeport-addresses'),
    'masquerade-all': flags.get('masquerade-all') as boolean | undefined,
    'ip-families': joined('ip-families'),
  });
  const nodeIps = (flags.get('node-ip') as string[] | undefined) ?? [];
  for (const ip of nodeIps) if (canonicalIp(ip) === undefined) throw new FlagError(`--node-ip: "${ip}" is not an IP address`);
  const nodeName = (text('hostname-override') ?? hostname()).trim().toLowerCase();
  const source = resolveSource({ manifests: text('manifests'), kubeconfig: text('kubeconfig'), master: text('master'), contentType: (text('kube-api-content-type') ?? '').includes('json') ? 'json' : 'protobuf', qps: 50, burst: 100 });
  const { state, facts } = await snapshot({
    ...(source.kind === 'files' ? { manifests: source.dir } : { kubeconfig: source.kubeconfig, master: source.master, contentType: source.contentType }),
    nodeName,
    hostAddresses: nodeIps,
    config,
    logger: { warn: (_fields, message) => io.stderr(`warning: ${message}\n`) },
  });
  if (!facts.nodes.has(nodeName)) {
    const known = [...facts.nodes].sort();
    io.stderr(`warning: no Node named "${nodeName}" (${known.length === 0 ? 'the source has no Node objects' : `known: ${known.slice(0, 10).join(', ')}${known.length > 10 ? ', ...' : ''}`}); no endpoint counts as local to it and NodePorts answer only on --node-ip addresses. Give --hostname-override NODE.\n`);
  }
  const packet: TracePacket = { src, dst: dst.ip, port: dst.port, protocol, inInterface: text('from-interface') };
  const verdict = explainNoEndpoints(trace(state, packet, { mode: text('proxy-mode') ?? 'ebpf' }), facts);
  io.stdout(output === 'json' ? `${JSON.stringify({ packet, ...verdict }, null, 2)}\n` : `${formatVerdict(packet, verdict)}\n`);
  return 0;
}
