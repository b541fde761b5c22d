// The cluster side of bench:agent, run inside the lab node's netns beside the agent: the test API
// server holding N services x E endpoints, the churn (EndpointSlice changes stamped with
// last-change-trigger-time), and the prober that polls /healthz and /livez every 200 ms with a
// 1 s timeout and scrapes /metrics. Commands come as JSON lines on stdin, answers go to stdout.
//   {"cmd":"churn","perSecond":20,"seconds":60}  ->  {"churned":1200}
//   {"cmd":"probe","start":true} / {"cmd":"probe","stop":true}  ->  {"probes":..,"failed":..}
//   {"cmd":"metrics"}  ->  {"metrics":"<exposition text>"}
import { request } from 'node:http';
import { createInterface } from 'node:readline';
import { TestApiServer } from '../test/apiserver/server.ts';
import { service, slice } from '../test/cases/objects.ts';

const services = Number(process.argv[2] ?? 1000);
const endpoints = Number(process.argv[3] ?? 10);
const nodeName = process.argv[4] ?? 'n0';

const clusterIp = (i: number): string => `10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
const endpointIp = (i: number, j: number): string => `10.${128 + (((i * endpoints + j) >> 16) & 127)}.${((i * endpoints + j) >> 8) & 255}.${(i * endpoints + j) & 255}`;

function sliceOf(i: number, generation: number): object {
  const s = slice({
    name: `svc-${i}-x`,
    service: `svc-${i}`,
    ports: [{ name: 'http', port: 8080 }],
    endpoints: Array.from({ length: endpoints }, (_, j) => ({ ip: endpointIp(i, j), node: `node-${j}`, zone: `zone-${j % 3}` })),
  }) as unknown as { metadata: Record<string, unknown>; endpoints: Array<{ conditions?: Record<string, boolean> }> };
  if (generation > 0) {
    s.metadata.annotations = { 'endpoints.kubernetes.io/last-change-trigger-time': new Date().toISOString() };
    // A change the model sees: one endpoint flips between ready and not ready.
    const e = s.endpoints[generation % endpoints]!;
    e.conditions = { ready: generation % 2 === 0, serving: true, terminating: false };
  }
  return s;
}

const server = new TestApiServer();
for (let i = 0; i < services; i++) {
  server.put('Service', service({ name: `svc-${i}`, clusterIPs: [clusterIp(i)], ports: [{ name: 'http', port: 80, targetPort: 8080 }] }));
  server.put('EndpointSlice', sliceOf(i, 0));
}
server.put('Node', { metadata: { name: nodeName, labels: { 'topology.kubernetes.io/zone': 'zone-0' } }, spec: { podCIDRs: ['10.244.0.0/24'] }, status: { addresses: [{ type: 'InternalIP', address: '10.254.0.11' }] } });
await server.start();

const say = (o: object): void => void process.stdout.write(`${JSON.stringify(o)}\n`);
say({ url: server.url });

function get(url: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = request(url, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 0, body: '' }));
    req.end();
  });
}

let probing: NodeJS.Timeout | undefined;
let probes = 0;
let failed = 0;
const generations = new Map<number, number>();

createInterface({ input: process.stdin }).on('line', (line) => {
  const c = JSON.parse(line) as { cmd: string; perSecond?: number; seconds?: number; start?: boolean; stop?: boolean };
  if (c.cmd === 'churn') {
    const total = Math.round((c.perSecond ?? 20) * (c.seconds ?? 60));
    const every = 1000 / (c.perSecond ?? 20);
    const t0 = Date.now();
    let n = 0;
    const step = (): void => {
      // Catch up to the schedule (a timer that fired late sends what it owes).
      while (n < total && Date.now() - t0 >= n * every) {
        const i = (n * 7919) % services;
        const g = (generations.get(i) ?? 0) + 1;
        generations.set(i, g);
        server.put('EndpointSlice', sliceOf(i, g));
        n++;
      }
      if (n < total) setTimeout(step, Math.max(1, t0 + n * every - Date.now()));
      else say({ churned: n });
    };
    step();
  } else if (c.cmd === 'probe' && c.start) {
    probes = 0;
    failed = 0;
    probing = setInterval(() => {
      for (const path of ['/healthz', '/livez']) {
        probes++;
        void get(`http://127.0.0.1:10256${path}`, 1000).then((r) => r.status !== 200 && failed++);
      }
    }, 200);
  } else if (c.cmd === 'probe' && c.stop) {
    clearInterval(probing);
    say({ probes, failed });
  } else if (c.cmd === 'metrics') {
    void get('http://127.0.0.1:10249/metrics', 30_000).then((r) => say({ metrics: r.body }));
  } else if (c.cmd === 'exit') {
    void server.stop().then(() => process.exit(0));
  }
});
