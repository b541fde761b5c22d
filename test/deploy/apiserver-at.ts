// The test API server at a lab address, run inside a lab namespace (the lab's "control plane"):
//   node apiserver-at.ts --lab PREFIX --listen 10.254.0.200:6443 --cert C --key K --token T
// It serves the semantic cluster over TLS with a bearer token (plain HTTP without --cert), and
// prints "ready" once listening. "--lab PREFIX" lets the lab's sweep find it if the test dies;
// "--absent KIND" makes it an API server without that kind (ServiceCIDR before 1.33).
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { parseArgs } from 'node:util';
import { node, serviceCIDRs, services, slices } from '../cases/semantics.ts';
import { TestApiServer } from '../apiserver/server.ts';
import type { KindName } from '../../control/sources/kube/kinds.ts';

const { values } = parseArgs({ options: { lab: { type: 'string' }, listen: { type: 'string' }, cert: { type: 'string' }, key: { type: 'string' }, token: { type: 'string' }, absent: { type: 'string', multiple: true } } });
const [host, port] = [values.listen!.slice(0, values.listen!.lastIndexOf(':')), Number(values.listen!.slice(values.listen!.lastIndexOf(':') + 1))];
const absentKinds = (values.absent ?? []) as KindName[];
const tls = values.cert === undefined ? undefined : { cert: readFileSync(values.cert, 'utf8'), key: readFileSync(values.key!, 'utf8') };
const server = new TestApiServer({ ...(tls ? { tls } : {}), ...(values.token ? { token: values.token } : {}), absentKinds });
await server.start();
for (const s of services) server.put('Service', s);
for (const s of slices) server.put('EndpointSlice', s);
server.put('Node', node);
for (const c of serviceCIDRs) server.put('ServiceCIDR', c);
// The server listens on this namespace's loopback; the lab address reaches it through a relay.
const inner = Number(new URL(server.url).port);
const relay = net.createServer((client) => {
  const upstream = net.connect(inner, '127.0.0.1');
  client.pipe(upstream).pipe(client);
  const close = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close);
  upstream.on('error', close);
});
relay.listen(port, host, () => process.stdout.write('ready\n'));
