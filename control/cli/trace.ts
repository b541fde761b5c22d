// switchyard trace --src IP --dst IP:PORT --proto tcp|udp|sctp [--manifests DIR | --kubeconfig F]
// The verdict for one packet on this node, from the same desired state the backends compile.
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { canonicalIp, hostPort } from '../model/ip.ts';
import type { Protocol } from '../model/types.ts';
import { trace, type TracePacket, type TraceVerdict } from '../trace/trace.ts';
import { MODEL_FLAG_OPTIONS, modelConfigFromFlags } from './model-flags.ts';
import { snapshot } from './snapshot.ts';
import { table } from './table.ts';
import type { CommandIO } from './io.ts';

export const TRACE_USAGE = `usage: switchyard trace --src IP --dst IP:PORT --proto tcp|udp|sctp
         (--manifests DIR | --kubeconfig FILE | --master URL)
         [--hostname-override NODE] [--from-interface IFACE] [--node-ip IP,...]
         [--cluster-cidr CIDRS] [--detect-local-mode MODE] [--nodeport-addresses CIDRS]
         [--masquerade-all] [--proxy-mode ebpf|iptables|nftables|ipvs]
         [--kube-api-content-type TYPE] [--output table|json]`;

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

export async function traceCommand(argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      src: { type: 'string' },
      dst: { type: 'string' },
      proto: { type: 'string', default: 'tcp' },
      manifests: { type: 'string' },
      kubeconfig: { type: 'string' },
      master: { type: 'string' },
      'kube-api-content-type': { type: 'string', default: 'application/vnd.kubernetes.protobuf' },
      'hostname-override': { type: 'string' },
      'from-interface': { type: 'string' },
      'node-ip': { type: 'string' },
      output: { type: 'string', short: 'o', default: 'table' },
      'proxy-mode': { type: 'string', default: 'ebpf' },
      ...MODEL_FLAG_OPTIONS,
    },
    strict: true,
  });
  const src = values.src === undefined ? undefined : canonicalIp(values.src);
  const dst = values.dst === undefined ? undefined : parseHostPort(values.dst);
  const protocol = values.proto.toUpperCase();
  if (src === undefined || dst === undefined || !['TCP', 'UDP', 'SCTP'].includes(protocol)) {
    io.stderr(`${TRACE_USAGE}\n`);
    if (values.src !== undefined && src === undefined) io.stderr(`--src: "${values.src}" is not an IP address\n`);
    if (values.dst !== undefined && dst === undefined) io.stderr(`--dst: "${values.dst}" is not IP:PORT\n`);
    return 2;
  }
  if (values.output !== 'table' && values.output !== 'json') {
    io.stderr('--output: table or json\n');
    return 2;
  }
  const config = modelConfigFromFlags(values);
  const { state } = await snapshot({
    manifests: values.manifests,
    kubeconfig: values.kubeconfig,
    master: values.master,
    contentType: values['kube-api-content-type'].includes('json') ? 'json' : 'protobuf',
    nodeName: values['hostname-override'] ?? hostname().toLowerCase(),
    hostAddresses: (values['node-ip'] ?? '').split(',').filter((s) => s !== ''),
    config,
    logger: { warn: (_fields, message) => io.stderr(`warning: ${message}\n`) },
  });
  const packet: TracePacket = { src, dst: dst.ip, port: dst.port, protocol: protocol as Protocol, inInterface: values['from-interface'] };
  const verdict = trace(state, packet, { mode: values['proxy-mode'] });
  io.stdout(values.output === 'json' ? `${JSON.stringify({ packet, ...verdict }, null, 2)}\n` : `${formatVerdict(packet, verdict)}\n`);
  return 0;
}
