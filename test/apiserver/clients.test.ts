// Real clients against the test API server over loopback: Debian's kubectl (kubernetes-client,
// 1.20), any other kubectl on the machine (here the Cloud SDK's 1.32), and Debian's Python
// client (python3-kubernetes). List, get, selectors, chunked lists (--chunk-size) and watches
// with selectors, each checked against the server's own state. A client that is missing makes
// the test fail under CI=true (.ci/setup installs them), and skip with the reason elsewhere.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it, type TestContext } from 'node:test';
import { service, slice } from '../cases/objects.ts';
import { environmentMissing } from '../ci.ts';
import { waitFor } from './harness.ts';
import { TestApiServer } from './server.ts';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
const DEBIAN_KUBECTL = [join(root, 'build/debian/kubernetes-client/usr/bin/kubectl'), '/usr/bin/kubectl'];
const PYTHON = '/usr/bin/python3'; // Debian's, which python3-kubernetes installs into
const PY_CLIENT = fileURLToPath(new URL('./clients/python_client.py', import.meta.url));
const TIMEOUT_MS = 60_000;

/** Missing here: the test fails in CI (where .ci/setup must have installed it), else it skips. */
function missing(t: TestContext, what: string): void {
  environmentMissing(t, `${what} is not installed (.ci/setup installs it)`);
}

async function kubectlVersion(bin: string): Promise<string | undefined> {
  try {
    const { stdout } = await run(bin, ['version', '--client', '-o', 'json'], { timeout: TIMEOUT_MS });
    return (JSON.parse(stdout) as { clientVersion: { gitVersion: string } }).clientVersion.gitVersion;
  } catch {
    return undefined;
  }
}

/** Every kubectl on this machine, once each: Debian's first. */
async function kubectls(): Promise<Array<{ bin: string; version: string; debian: boolean }>> {
  const found = new Map<string, { bin: string; version: string; debian: boolean }>();
  const candidates = [...DEBIAN_KUBECTL, ...(process.env.PATH ?? '').split(':').map((d) => join(d, 'kubectl'))];
  for (const bin of candidates) {
    if (!existsSync(bin)) continue;
    const real = realpathSync(bin);
    if (found.has(real)) continue;
    const version = await kubectlVersion(bin);
    // Debian's kubernetes-client reports GitTreeState "archive" and is 1.20 in bookworm.
    if (version !== undefined) found.set(real, { bin, version, debian: version.startsWith('v1.20.') });
  }
  return [...found.values()];
}

interface Item {
  metadata: { name: string; namespace?: string };
}

describe('real clients against the test API server', () => {
  const server = new TestApiServer({ bookmarkIntervalMs: 200 });
  const dir = mkdtempSync(join(tmpdir(), 'sy-clients-'));
  const kubeconfig = join(dir, 'kubeconfig');

  before(async () => {
    await server.start();
    writeFileSync(
      kubeconfig,
      `apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: ${server.url}\nusers:\n- name: t\n  user: {}\ncontexts:\n- name: t\n  context: {cluster: t, user: t}\ncurrent-context: t\n`,
    );
    for (let i = 1; i <= 5; i++) server.put('Service', service({ name: `s${i}`, clusterIPs: [`10.96.0.${i}`], ports: [{ port: 80 }], labels: { app: i % 2 === 0 ? 'even' : 'odd' } }));
    server.put('Service', service({ ns: 'other', name: 'x', clusterIPs: ['10.96.0.50'], ports: [{ port: 80 }], labels: { app: 'odd' } }));
    server.put('EndpointSlice', slice({ name: 's1-abc', service: 's1', ports: [{ port: 80 }], endpoints: [{ ip: '10.244.0.1', node: 'n0' }] }));
    server.put('Node', { metadata: { name: 'n0' }, status: { addresses: [{ type: 'InternalIP', address: '10.254.0.1' }] } });
  });

  after(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const all = (): string[] => server.list('Service').map((o) => `${o.metadata?.namespace}/${o.metadata?.name}`).sort();

  it('kubectl (Debian\'s and any other): list, get, selectors, chunked list, watch with a selector', async (t) => {
    const found = await kubectls();
    if (!found.some((k) => k.debian)) return missing(t, "Debian's kubectl (package kubernetes-client)");
    t.diagnostic(`kubectl: ${found.map((k) => `${k.version} (${k.bin})`).join(', ')}`);
    for (const { bin, version } of found) {
      const cacheDir = join(dir, `cache-${version}`);
      const kubectl = async (...args: string[]): Promise<string> =>
        (await run(bin, ['--kubeconfig', kubeconfig, '--cache-dir', cacheDir, '--request-timeout', '30s', ...args], { timeout: TIMEOUT_MS, env: { ...process.env, HOME: dir } })).stdout;
      const json = async (...args: string[]): Promise<Item[]> => (JSON.parse(await kubectl(...args, '-o', 'json')) as { items: Item[] }).items;
      const ids = (items: Item[]): string[] => items.map((i) => `${i.metadata.namespace}/${i.metadata.name}`).sort();

      const before = server.requests.length;
      assert.deepEqual(ids(await json('get', 'services', '-A', '--chunk-size=2')), all(), `${version}: chunked list`);
      const pages = server.requests.slice(before).filter((r) => r.verb === 'list' && r.kind === 'Service');
      assert.equal(pages.length, 3, `${version}: 6 services in pages of 2`);
      assert.ok(pages.every((p) => p.query.limit === '2') && pages.slice(1).every((p) => p.query.continue !== undefined));

      const one = JSON.parse(await kubectl('get', 'service', 's1', '-n', 'demo', '-o', 'json')) as { kind: string; spec: { clusterIP: string } };
      assert.deepEqual([one.kind, one.spec.clusterIP], ['Service', '10.96.0.1'], `${version}: get`);
      assert.equal((await kubectl('get', 'svc', '-A', '-l', 'app=odd', '-o', 'name')).trim().split('\n').sort().join(' '), 'service/s1 service/s3 service/s5 service/x');
      assert.equal((await kubectl('get', 'svc', '-A', '-l', 'app in (even)', '-o', 'name')).trim(), 'service/s2\nservice/s4');
      assert.deepEqual(ids(await json('get', 'services', '-A', '--field-selector', 'metadata.namespace=other')), ['other/x']);
      assert.deepEqual(ids(await json('get', 'endpointslices', '-n', 'demo')), ['demo/s1-abc']);
      assert.deepEqual((await json('get', 'nodes')).map((n) => n.metadata.name), ['n0']);
      const notFound = await kubectl('get', 'svc', 'nope', '-n', 'demo').then(
        () => '',
        (e: { stderr?: string }) => e.stderr ?? '',
      );
      assert.match(notFound, /services "nope" not found/);

      // A watch with a label selector: the current even services, then what changes.
      const child = spawn(bin, ['--kubeconfig', kubeconfig, '--cache-dir', cacheDir, 'get', 'svc', '-n', 'demo', '-l', 'app=even', '-w', '-o', 'name', '--chunk-size=2'], { env: { ...process.env, HOME: dir }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      try {
        await waitFor(`${version}: the watch's first lines`, () => out.includes('service/s2') && out.includes('service/s4'), TIMEOUT_MS);
        await waitFor(`${version}: the watch open`, () => server.requests.some((r, i) => i >= before && r.verb === 'watch' && r.query.labelSelector === 'app=even'), TIMEOUT_MS);
        server.put('Service', service({ name: 's7', clusterIPs: ['10.96.0.7'], ports: [{ port: 80 }], labels: { app: 'odd' } })); // not selected
        server.put('Service', service({ name: 's6', clusterIPs: ['10.96.0.6'], ports: [{ port: 80 }], labels: { app: 'even' } }));
        await waitFor(`${version}: s6 through the watch (stderr: ${err})`, () => out.includes('service/s6'), TIMEOUT_MS);
        assert.ok(!out.includes('service/s7'), `${version}: the selector holds on the watch`);
      } finally {
        child.kill('SIGTERM');
        server.remove('Service', 'demo/s6');
        server.remove('Service', 'demo/s7');
      }
    }
  });

  it('the Python client (python3-kubernetes): chunked list, get, selectors, watch=True with a selector', async (t) => {
    if (!existsSync(PYTHON) || (await run(PYTHON, ['-c', 'import kubernetes'], { timeout: TIMEOUT_MS }).then(() => false, () => true))) {
      return missing(t, 'the Python client (package python3-kubernetes)');
    }
    const child = spawn(PYTHON, [PY_CLIENT, server.url], { stdio: ['ignore', 'pipe', 'pipe'] });
    const steps = new Map<string, Record<string, unknown>>();
    let err = '';
    let pending = '';
    child.stdout.on('data', (d: Buffer) => {
      pending += d.toString();
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const l of lines) {
        const step = JSON.parse(l) as { step: string };
        steps.set(step.step, step);
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    try {
      await waitFor(`the watch to be ready (stderr: ${err})`, () => steps.has('ready') || child.exitCode !== null, TIMEOUT_MS);
      assert.ok(steps.has('ready'), `python: ${err}`);
      server.put('Service', service({ name: 's6', clusterIPs: ['10.96.0.6'], ports: [{ port: 80 }], labels: { app: 'even' } }));
      assert.equal(await exited, 0, err);
    } finally {
      child.kill('SIGTERM');
    }
    server.remove('Service', 'demo/s6');
    assert.deepEqual(steps.get('chunked-list'), { step: 'chunked-list', names: all(), pages: 3 });
    assert.deepEqual(steps.get('get'), { step: 'get', name: 's1', clusterIP: '10.96.0.1', managedFields: 1 });
    assert.deepEqual(steps.get('label-selector')?.names, ['s1', 's3', 's5', 'x']);
    assert.deepEqual(steps.get('field-selector')?.names, ['x']);
    assert.deepEqual(steps.get('endpointslices'), { step: 'endpointslices', names: ['s1-abc'], targetRef: 'Pod' });
    assert.deepEqual(steps.get('nodes'), { step: 'nodes', names: ['n0'], kubelet: 'v1.32.0' });
    assert.deepEqual(steps.get('watch')?.seen, [['ADDED', 's2'], ['ADDED', 's4'], ['ADDED', 's6']]);
    const watch = server.requests.find((r) => r.verb === 'watch' && r.userAgent.includes('python'))!;
    assert.equal(watch.query.watch, 'True', 'the Python client says watch=True');
  });
});
