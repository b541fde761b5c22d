// The inspect commands' output against golden files written by hand (test/inspect/golden/): a
// realistic table of frontends and flows, sorted numerically (10.96.0.9 before 10.96.0.10),
// filtered, and as JSON and YAML. A change of layout means editing the golden files by hand.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { compareHostPort, renderFlows, renderServices, selectFlows, type FlowRow, type ServiceRow } from '../../control/inspect/format.ts';
import { main } from '../../control/cli/main.ts';

const golden = (name: string): string => readFileSync(new URL(`golden/${name}`, import.meta.url), 'utf8');

const svc = (o: Partial<ServiceRow> & Pick<ServiceRow, 'frontend' | 'serviceId'>): ServiceRow => ({
  protocol: 'TCP',
  scope: 'internal',
  flags: '-',
  backends: [],
  backendAddresses: [],
  backendStates: [],
  affinitySeconds: 0,
  algorithm: 'random',
  revNatId: o.serviceId,
  packets: '0',
  bytes: '0',
  ...o,
});

// In the maps' order (hash order, not sorted), as the command reads them.
const KERNEL: ServiceRow[] = [
  svc({ frontend: '10.254.0.11:30080', scope: 'external', flags: 'node-port', serviceId: 2, backends: [4, 3], backendAddresses: ['10.244.1.11:8080', '10.244.0.11:8080'], backendStates: ['active', 'active'], packets: '120', bytes: '9600', revNatId: 5 }),
  svc({ frontend: '[fd00:96::10]:80', serviceId: 4, backends: [9, 8], backendAddresses: ['[fd00:10:244:1::b]:8080', '[fd00:10:244::b]:8080'], backendStates: ['active', 'active'], packets: '7', bytes: '560' }),
  svc({ frontend: '10.96.100.1:443', serviceId: 3, backends: [5], backendAddresses: ['10.244.1.30:6443'], backendStates: ['active'], affinitySeconds: 10800, algorithm: 'maglev' }),
  svc({ frontend: '10.96.0.10:80', serviceId: 2, backends: [4, 3], backendAddresses: ['10.244.1.11:8080', '10.244.0.11:8080'], backendStates: ['active', 'active'], packets: '120', bytes: '9600' }),
  svc({ frontend: '10.96.0.9:53', protocol: 'UDP', serviceId: 1, backends: [7], backendAddresses: ['10.244.0.20:53'], backendStates: ['terminating'], packets: '42', bytes: '3360' }),
];

const API: Record<string, Partial<ServiceRow>> = {
  '10.254.0.11:30080': { servicePort: 'demo/web:http/TCP/v4', api: 'in-sync' },
  '[fd00:96::10]:80': { servicePort: 'demo/web:http/TCP/v6', api: 'in-sync' },
  '10.96.100.1:443': { servicePort: 'default/kubernetes:https/TCP/v4', api: 'differs', apiBackends: ['10.244.1.30:6443', '10.244.0.30:6443'] },
  '10.96.0.10:80': { servicePort: 'demo/web:http/TCP/v4', api: 'in-sync' },
  '10.96.0.9:53': { servicePort: 'kube-system/dns:dns/UDP/v4', api: 'in-sync' },
};
const JOINED: ServiceRow[] = [
  ...KERNEL.map((r) => ({ ...r, apiBackends: [], ...API[r.frontend] })),
  svc({ frontend: '10.96.0.50:80', serviceId: 0, algorithm: '', servicePort: 'demo/new:http/TCP/v4', api: 'missing', apiBackends: ['10.244.0.40:80'] }),
];

const flow = (o: Omit<FlowRow, 'protocol' | 'snat' | 'closing' | 'nat'> & Partial<FlowRow>): FlowRow => ({ protocol: 'TCP', nat: '', snat: false, closing: false, ...o });
const FLOWS: FlowRow[] = [
  flow({ direction: 'forward', source: '10.244.0.10:40001', destination: '10.96.0.10:80', frontend: '10.96.0.10:80', backendId: 4, backend: '10.244.1.11:8080', idleSeconds: 3 }),
  flow({ direction: 'forward', protocol: 'UDP', source: '10.244.0.10:53001', destination: '10.96.0.9:53', frontend: '10.96.0.9:53', backendId: 7, backend: '10.244.0.20:53', idleSeconds: 45 }),
  flow({ direction: 'reply', source: '10.244.1.11:8080', destination: '10.244.0.10:40001', frontend: '10.96.0.10:80', backendId: 4, backend: '10.244.1.11:8080', nat: '10.244.0.10:40001', idleSeconds: 3 }),
  flow({ direction: 'forward', source: '10.254.0.200:51000', destination: '10.254.0.11:30080', frontend: '10.254.0.11:30080', backendId: 4, backend: '10.244.1.11:8080', nat: '10.254.0.11:51000', snat: true, idleSeconds: 12 }),
  flow({ direction: 'reply', protocol: 'UDP', source: '10.244.0.20:53', destination: '10.244.0.10:53001', frontend: '10.96.0.9:53', backendId: 7, backend: '10.244.0.20:53', nat: '10.244.0.10:53001', idleSeconds: 45 }),
  flow({ direction: 'reply', source: '10.244.1.11:8080', destination: '10.254.0.11:51000', frontend: '10.254.0.11:30080', backendId: 4, backend: '10.244.1.11:8080', nat: '10.254.0.200:51000', snat: true, idleSeconds: 12 }),
  flow({ direction: 'forward', source: '10.244.0.9:39000', destination: '10.96.0.10:80', frontend: '10.96.0.10:80', backendId: 3, backend: '10.244.0.11:8080', closing: true, idleSeconds: 3 }),
  flow({ direction: 'reply', source: '10.244.0.11:8080', destination: '10.244.0.9:39000', frontend: '10.96.0.10:80', backendId: 3, backend: '10.244.0.11:8080', nat: '10.244.0.9:39000', closing: true, idleSeconds: 3 }),
];

describe('inspect output', () => {
  it('orders addresses numerically, IPv4 before IPv6', () => {
    const sorted = ['[fd00::1]:80', '10.96.0.10:80', '10.96.0.9:80', '10.96.0.9:443', '9.0.0.1:1'].sort(compareHostPort);
    assert.deepEqual(sorted, ['9.0.0.1:1', '10.96.0.9:80', '10.96.0.9:443', '10.96.0.10:80', '[fd00::1]:80']);
  });

  it('services: frontends sorted, backends by address beneath, totals once per service', () => {
    assert.equal(renderServices(KERNEL, 'table', false), golden('services-kernel.txt'));
  });

  it('services with the API view: service ports, in-sync / differs / missing', () => {
    assert.equal(renderServices(JOINED, 'table', true), golden('services-api.txt'));
  });

  it('services as YAML keeps the ids', () => {
    const udp = KERNEL.filter((r) => r.protocol === 'UDP');
    assert.equal(renderServices(udp, 'yaml', false), golden('services-udp.yaml'));
  });

  it('conntrack: both directions, translations in words, most recent first', () => {
    assert.equal(renderFlows(selectFlows(FLOWS, {}), 'table', FLOWS.length), golden('conntrack.txt'));
  });

  it('conntrack filtered by service and protocol, sorted by source, limited', () => {
    const shown = selectFlows(FLOWS, { service: '10.96.0.10', proto: 'tcp', sort: 'source', limit: 3 });
    assert.equal(renderFlows(shown, 'table', FLOWS.length), golden('conntrack-filtered.txt'));
  });

  it('conntrack filtered by backend, as JSON and YAML', () => {
    const shown = selectFlows(FLOWS, { backend: '10.244.0.11:8080' });
    assert.equal(renderFlows(shown, 'json', FLOWS.length), golden('conntrack-backend.json'));
    assert.equal(renderFlows(shown, 'yaml', FLOWS.length), golden('conntrack-backend.yaml'));
    assert.deepEqual(parse(golden('conntrack-backend.yaml')), JSON.parse(golden('conntrack-backend.json')));
  });

  it('the commands refuse an unknown -o and name a missing pin directory', async () => {
    let err = '';
    const io = { stdout: () => undefined, stderr: (t: string) => void (err += t) };
    assert.equal(await main(['conntrack', '-o', 'xml'], io), 2);
    assert.match(err, /^switchyard conntrack: invalid argument "xml" for "-o, --output" flag: valid values are table, json, yaml\n/);
    err = '';
    assert.equal(await main(['services', '--bpffs-dir', '/sys/fs/bpf/switchyard-no-such-dir', '--agent', 'none'], io), 1);
    assert.match(err, /^switchyard services: \/sys\/fs\/bpf\/switchyard-no-such-dir does not exist: no agent has pinned its maps there/);
  });
});
