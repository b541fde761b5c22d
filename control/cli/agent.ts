// switchyard (the agent): kube-proxy's flags where they apply, plus Switchyard's own.
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { Agent, type SourceOptions } from '../agent/agent.ts';
import type { CommandIO } from './io.ts';
import { MODEL_FLAG_OPTIONS, modelConfigFromFlags } from './model-flags.ts';

const DATAPATH_OBJECT = fileURLToPath(new URL('../../build/bpf/datapath.o', import.meta.url));

export async function agentCommand(argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'proxy-mode': { type: 'string', default: 'ebpf' },
      'hostname-override': { type: 'string' },
      kubeconfig: { type: 'string' },
      master: { type: 'string' },
      'kube-api-content-type': { type: 'string', default: 'application/vnd.kubernetes.protobuf' },
      manifests: { type: 'string' },
      'bpffs-dir': { type: 'string', default: '/sys/fs/bpf/switchyard' },
      'pod-device-prefixes': { type: 'string', default: 'veth' },
      'external-devices': { type: 'string', default: '' },
      'cgroup-root': { type: 'string' },
      'healthz-bind-address': { type: 'string', default: '0.0.0.0:10256' },
      'metrics-bind-address': { type: 'string', default: '127.0.0.1:10249' },
      'iptables-sync-period': { type: 'string', default: '30s' },
      v: { type: 'string', short: 'v', default: '2' },
      ...MODEL_FLAG_OPTIONS,
    },
    strict: true,
  });
  if (values['proxy-mode'] !== 'ebpf') {
    io.stderr(`--proxy-mode ${values['proxy-mode']}: only ebpf is built so far\n`);
    return 2;
  }
  const level = Number(values.v) >= 4 ? 'debug' : 'info';
  const logger = pino({ level, base: { component: 'switchyard' } });
  const source: SourceOptions =
    values.manifests !== undefined
      ? { kind: 'files', dir: values.manifests }
      : { kind: 'kube', kubeconfig: values.kubeconfig, master: values.master, contentType: values['kube-api-content-type'].includes('json') ? 'json' : 'protobuf' };
  const list = (s: string): string[] => s.split(',').map((x) => x.trim()).filter((x) => x !== '');
  const agent = new Agent({
    nodeName: values['hostname-override'] ?? hostname().toLowerCase(),
    model: modelConfigFromFlags(values),
    source,
    backend: {
      object: DATAPATH_OBJECT,
      pinDir: values['bpffs-dir'],
      podDevicePrefixes: list(values['pod-device-prefixes']),
      externalDevices: list(values['external-devices']),
      cgroup: values['cgroup-root'],
    },
    logger,
    healthzBindAddress: values['healthz-bind-address'],
    metricsBindAddress: values['metrics-bind-address'],
    syncPeriodMs: parseDuration(values['iptables-sync-period'], '--iptables-sync-period'),
    configz: { proxyMode: 'ebpf', flags: values },
  });
  await agent.start();
  await new Promise<void>((resolve) => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => resolve());
  });
  logger.info('stopping; the datapath stays in place');
  await agent.stop();
  return 0;
}

/** Go-style durations as kube-proxy's flags take them: "30s", "1m", "500ms", "1h30m". */
export function parseDuration(text: string, flag: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let rest = text.trim();
  if (rest === '' || rest === '0') return 0;
  while (rest !== '') {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)/.exec(rest);
    if (m === null) throw new Error(`${flag}: "${text}" is not a duration like 30s or 1m`);
    total += Number(m[1]) * units[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return total;
}
