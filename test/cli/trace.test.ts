// switchyard trace as a user runs it: from manifests on disk and from the API server, as a
// table and as JSON; and every case of the semantic table through the CLI's JSON output.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { main } from '../../control/cli/main.ts';
import { TestApiServer } from '../apiserver/server.ts';
import { writeManifests } from '../cases/manifests.ts';
import { cases, node, podOf, services, slices } from '../cases/semantics.ts';

const cli = fileURLToPath(new URL('../../control/cli/main.ts', import.meta.url));
const FLAGS = ['--hostname-override', 'n0', '--cluster-cidr', '10.244.0.0/16,fd00:10:244::/48', '--nodeport-addresses', '10.254.0.0/24,fd00:254::/64'];

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(args, { stdout: (t) => (out += t), stderr: (t) => (err += t) });
  return { code, out, err };
}

describe('switchyard trace', () => {
  let dir: string;
  before(() => {
    dir = writeManifests();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('prints a readable verdict from the real executable', async () => {
    const out = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, [cli, 'trace', '--src', '10.244.0.10', '--dst', '10.96.0.10:80', '--proto', 'tcp', '--manifests', dir, ...FLAGS], (e, stdout, stderr) =>
        e ? reject(new Error(`${e.message}\n${stderr}`)) : resolve(stdout),
      ),
    );
    assert.match(out, /service {2}demo\/web:http {2}\[ClusterIP 10\.96\.0\.10:80\]/);
    assert.match(out, /verdict {2}FORWARD/);
    assert.match(out, /10\.244\.0\.11:8080 +n0 +yes +50\.0% +client/);
    assert.match(out, /10\.244\.1\.11:8080 +n1 +no +50\.0% +client/);
  });

  it('takes IPv6 destinations in brackets', async () => {
    const r = await run(['trace', '--src', 'fd00:10:244::a', '--dst', '[fd00:96::10]:80', '--manifests', dir, ...FLAGS, '-o', 'json']);
    assert.equal(r.code, 0, r.err);
    const v = JSON.parse(r.out);
    assert.equal(v.verdict, 'FORWARD');
    assert.deepEqual(v.endpoints.map((e: { ip: string }) => podOf(e.ip)).sort(), ['n0p1', 'n1p1']);
  });

  it('answers every case of the semantic table as trace() does', async () => {
    for (const c of cases) {
      const r = await run(['trace', '--src', c.src, '--dst', c.dst.includes(':') ? `[${c.dst}]:${c.port}` : `${c.dst}:${c.port}`, '--proto', c.protocol.toLowerCase(), '--manifests', dir, ...FLAGS, '--output', 'json']);
      assert.equal(r.code, 0, r.err);
      const v = JSON.parse(r.out);
      // The CLI answers for eBPF mode unless told otherwise.
      assert.equal(v.verdict, (c.inMode?.ebpf ?? c.expect).verdict, c.name);
      if (c.expect.verdict === 'FORWARD') assert.deepEqual(v.endpoints.map((e: { ip: string }) => podOf(e.ip)).sort(), [...c.expect.pods].sort(), c.name);
    }
  });

  it('reads the cluster from the API server too', async () => {
    const server = new TestApiServer();
    await server.start();
    try {
      for (const s of services) server.put('Service', s);
      for (const s of slices) server.put('EndpointSlice', s);
      server.put('Node', node);
      const config = `apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: ${server.url}\n    insecure-skip-tls-verify: true\nusers:\n- name: t\n  user: {}\ncontexts:\n- name: t\n  context: {cluster: t, user: t}\ncurrent-context: t\n`;
      const file = `${dir}/../switchyard-kubeconfig-${process.pid}`;
      writeFileSync(file, config);
      try {
        const r = await run(['trace', '--src', '10.254.0.200', '--dst', '10.254.0.50:80', '--kubeconfig', file, ...FLAGS, '-o', 'json']);
        assert.equal(r.code, 0, r.err);
        const v = JSON.parse(r.out);
        assert.equal(v.verdict, 'FORWARD');
        assert.equal(v.policy, 'Local');
        assert.deepEqual(v.endpoints.map((e: { ip: string }) => podOf(e.ip)), ['n0p0']);
        assert.ok(server.requests.some((q) => q.kind === 'Node' && q.query.fieldSelector === 'metadata.name=n0'));
      } finally {
        rmSync(file, { force: true });
      }
    } finally {
      await server.stop();
    }
  });

  it('explains bad input with usage and exit code 2', async () => {
    const r = await run(['trace', '--src', 'nope', '--dst', '10.96.0.10', '--manifests', dir]);
    assert.equal(r.code, 2);
    assert.match(r.err, /--src: "nope" is not an IP address/);
    assert.match(r.err, /--dst: "10.96.0.10" is not IP:PORT/);
    const bad = await run(['trace', '--src', '1.2.3.4', '--dst', '1.2.3.4:80', '--manifests', dir, '--cluster-cidr', 'x']);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /--cluster-cidr: "x" is not a CIDR/);
    const mode = await run(['trace', '--src', '1.2.3.4', '--dst', '1.2.3.4:80', '--manifests', dir, '--proxy-mode', 'bogus']);
    assert.equal(mode.code, 2);
    assert.match(mode.err, /valid values are ebpf, nftables, iptables, ipvs/);
  });

  it('warns when no Node is named --hostname-override, and --node-ip makes NodePorts answer there', async () => {
    const r = await run(['trace', '--src', '10.254.0.200', '--dst', '10.254.0.77:30080', '--manifests', dir, '--hostname-override', 'n9', '--node-ip', '10.254.0.77', '--cluster-cidr', '10.244.0.0/16', '-o', 'json']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /^warning: no Node named "n9" \(known: n0\); no endpoint counts as local/m);
    const v = JSON.parse(r.out);
    assert.notEqual(v.verdict, 'NO_SERVICE', 'the NodePort answers on the --node-ip address');
    const known = await run(['trace', '--src', '10.244.0.10', '--dst', '10.96.0.10:80', '--manifests', dir, ...FLAGS]);
    assert.doesNotMatch(known.err, /no Node named/);
  });

  it('a port-name mismatch between Service and EndpointSlice is named as such', async () => {
    const mismatch = mkdtempSync(join(tmpdir(), 'switchyard-mismatch-'));
    try {
      writeFileSync(join(mismatch, 'svc.yaml'), stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'api', namespace: 'demo' }, spec: { type: 'ClusterIP', clusterIP: '10.96.0.77', clusterIPs: ['10.96.0.77'], ipFamilies: ['IPv4'], ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] } }));
      writeFileSync(join(mismatch, 'slice.yaml'), stringify({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'api-1', namespace: 'demo', labels: { 'kubernetes.io/service-name': 'api' } }, addressType: 'IPv4', ports: [{ name: 'web', port: 8080, protocol: 'TCP' }], endpoints: [{ addresses: ['10.244.0.11'], conditions: { ready: true }, nodeName: 'n0' }] }));
      const r = await run(['trace', '--src', '10.244.0.10', '--dst', '10.96.0.77:80', '--manifests', mismatch, '--hostname-override', 'n0', '-o', 'json']);
      assert.equal(r.code, 0, r.err);
      const v = JSON.parse(r.out);
      assert.equal(v.verdict, 'REJECT');
      assert.equal(v.reason, 'port name mismatch: the service port is named "http", but its EndpointSlices only have ports "web"');
    } finally {
      rmSync(mismatch, { recursive: true, force: true });
    }
  });
});
