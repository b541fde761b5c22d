// The transport through client-node's KubeConfig: TLS with the cluster CA, bearer tokens, the
// in-cluster service account, and token rotation (re-read from the file, as client-go does).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, mock } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { Reflector } from '../../control/sources/kube/reflector.ts';
import { KubeConfigTransport } from '../../control/sources/kube/transport.ts';
import { Mirror, transportFor, waitFor } from '../apiserver/harness.ts';
import { TestApiServer } from '../apiserver/server.ts';
import { service } from '../cases/objects.ts';

const FAST = { initialMs: 20, maxMs: 100, factor: 2, jitter: 0 };

describe('transport: TLS, tokens, in-cluster', () => {
  let dir: string;
  let key: string;
  let cert: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'switchyard-tls-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    key = readFileSync(join(dir, 'key.pem'), 'utf8');
    cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('verifies the server against the cluster CA and sends the bearer token', async () => {
    const server = new TestApiServer({ tls: { key, cert }, token: 'secret-a' });
    await server.start();
    server.put('Service', service({ name: 'tls', clusterIPs: ['10.96.5.1'], ports: [{ port: 80 }] }));
    const good = new Mirror();
    const r = new Reflector({ kind: 'Service', transport: transportFor(server, { token: 'secret-a' }, Buffer.from(cert).toString('base64')), handler: good, backoff: FAST });
    r.start();
    await waitFor('sync over TLS', () => good.syncedKinds.has('Service'));
    await r.stop();

    const errors: string[] = [];
    const denied = new Reflector({ kind: 'Service', transport: transportFor(server, { token: 'wrong' }, Buffer.from(cert).toString('base64')), handler: new Mirror(), backoff: FAST, events: { error: (_k, e) => errors.push(e.message) } });
    denied.start();
    await waitFor('a refusal', () => errors.length > 0);
    await denied.stop();
    assert.match(errors[0]!, /401/);
    await server.stop();
  });

  it('in-cluster: service account CA and token, rotated token picked up', async () => {
    const server = new TestApiServer({ tls: { key, cert }, token: 'token-1' });
    await server.start();
    server.put('Service', service({ name: 'ic', clusterIPs: ['10.96.5.2'], ports: [{ port: 80 }] }));
    const sa = join(dir, 'var/run/secrets/kubernetes.io/serviceaccount');
    mkdirSync(sa, { recursive: true });
    writeFileSync(join(sa, 'ca.crt'), cert);
    writeFileSync(join(sa, 'token'), 'token-1');
    writeFileSync(join(sa, 'namespace'), 'kube-system');
    const port = new URL(server.url).port;
    const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
    process.env.KUBERNETES_SERVICE_HOST = '127.0.0.1';
    process.env.KUBERNETES_SERVICE_PORT = port;
    mock.timers.enable({ apis: ['Date'], now: Date.now() });
    try {
      const kc = new KubeConfig();
      kc.loadFromCluster(dir);
      const mirror = new Mirror();
      const r = new Reflector({ kind: 'Service', transport: new KubeConfigTransport(kc), handler: mirror, backoff: FAST, inactivityTimeoutMs: 200 });
      r.start();
      await waitFor('in-cluster sync', () => mirror.syncedKinds.has('Service'));
      // The kubelet rotates the projected token; the server stops accepting the old one.
      writeFileSync(join(sa, 'token'), 'token-2');
      server.setToken('token-2');
      mock.timers.tick(61_000); // client-node re-reads the file once a minute
      server.closeWatches();
      server.put('Service', service({ name: 'ic2', clusterIPs: ['10.96.5.3'], ports: [{ port: 80 }] }));
      await waitFor('a watch with the rotated token', () => mirror.of('Service').has('demo/ic2'));
      await r.stop();
    } finally {
      mock.timers.reset();
      process.env.KUBERNETES_SERVICE_HOST = saved.host;
      process.env.KUBERNETES_SERVICE_PORT = saved.port;
      if (saved.host === undefined) delete process.env.KUBERNETES_SERVICE_HOST;
      if (saved.port === undefined) delete process.env.KUBERNETES_SERVICE_PORT;
      await server.stop();
    }
  });
});
