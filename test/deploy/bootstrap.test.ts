// Bootstrap on a node with no state, in the image as the DaemonSet's pod: the test API server
// (TLS, bearer token) reachable only at its real address, 10.254.0.200:6443 in the lab's
// "control plane" namespace; KUBERNETES_SERVICE_HOST the ClusterIP 10.96.0.1, which nothing
// serves; no pins. With the shipped ConfigMap (kubeconfig.conf holding the real address, the
// service account's CA and token files) the agent syncs from the API server; with only the
// ClusterIP, or the shipped placeholder address, it stops at once saying what to set.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Lab, netnsPath } from '../lab/lab.ts';
import { ensureImage, runPod, unpack, type Bundle, type Container } from './image.ts';
import { configMapFile, labConfig, type PodStandIns } from './pod-spec.ts';

const API_SERVER = fileURLToPath(new URL('./apiserver-at.ts', import.meta.url));
const REAL_ADDRESS = '10.254.0.200:6443'; // the lab's external host stands in for the control plane
const CLUSTER_IP = '10.96.0.1';
const TOKEN = 'switchyard-sa-token';

describe('bootstrap on a node with no state', () => {
  let bundle: Bundle | undefined;
  let lab: Lab | undefined;
  let dir: string;
  let apiServer: ChildProcess | undefined;
  const containers: Container[] = [];

  before(async () => {
    await ensureImage();
    lab = await Lab.create({ nodes: 2, podsPerNode: 3, tag: 'boot' });
    bundle = await unpack(`${tmpdir()}/${lab.prefix}-bundle`);
    dir = `${tmpdir()}/${lab.prefix}-files`;
    mkdirSync(`${dir}/sa`, { recursive: true });
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=kube-apiserver', '-addext', 'subjectAltName=IP:10.254.0.200', '-keyout', `${dir}/key.pem`, '-out', `${dir}/sa/ca.crt`], { stdio: 'ignore', timeout: 30_000 });
    writeFileSync(`${dir}/sa/token`, TOKEN);
    writeFileSync(`${dir}/sa/namespace`, 'kube-system');
    apiServer = spawn('nsenter', [`--net=${netnsPath(lab.external.netns)}`, '--', process.execPath, API_SERVER, '--lab', lab.prefix, '--listen', REAL_ADDRESS, '--cert', `${dir}/sa/ca.crt`, '--key', `${dir}/key.pem`, '--token', TOKEN], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: apiServer!.stdout! }).on('line', (l) => l === 'ready' && resolve());
      apiServer!.once('exit', (code) => reject(new Error(`the test API server exited (${code})`)));
    });
  });

  after(async () => {
    for (const c of containers) await c.remove();
    apiServer?.kill('SIGKILL');
    await lab?.teardown();
    bundle?.remove();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  /** The agent's pod on n0 with these ConfigMap files; `name` keeps its pins and files apart. */
  function agentPod(name: string, files: { 'config.conf': string; 'kubeconfig.conf': string }): Container {
    const n0 = lab!.nodes[0]!;
    const configDir = `${dir}/${name}`;
    mkdirSync(configDir, { recursive: true });
    for (const [file, text] of Object.entries(files)) writeFileSync(`${configDir}/${file}`, text);
    const standIns: PodStandIns = {
      netnsPath: netnsPath(n0.netns),
      nodeName: n0.name,
      hostPaths: { '/sys/fs/bpf': '/sys/fs/bpf', '/sys/fs/cgroup': lab!.cgroup(n0), '/lib/modules': '/lib/modules', '/run/xtables.lock': '/run/xtables.lock' },
      configMaps: { switchyard: configDir },
      cgroupsPath: `/${lab!.prefix}-ctr-${name}`,
      kubeletEnv: { KUBERNETES_SERVICE_HOST: CLUSTER_IP, KUBERNETES_SERVICE_PORT: '443' },
      serviceAccount: `${dir}/sa`,
    };
    const c = runPod(bundle!, `${lab!.prefix}-${name}`, standIns);
    containers.push(c);
    return c;
  }

  it('nothing serves the kubernetes ClusterIP before the agent runs', async () => {
    const [viaClusterIp] = await lab!.probe(lab!.nodes[0]!.netns, { targets: [{ proto: 'tcp', host: CLUSTER_IP, port: 443 }], timeoutMs: 500 });
    assert.equal(viaClusterIp!.ok, false);
  });

  it('with only the in-cluster ClusterIP, the agent stops at once and says what to set', async () => {
    const pins = lab!.bpffsDir('incluster');
    const c = agentPod('incluster', {
      'config.conf': labConfig('ebpf', pins, { clientConnection: { kubeconfig: '', contentType: 'application/vnd.kubernetes.protobuf' } }),
      'kubeconfig.conf': configMapFile('kubeconfig.conf'),
    });
    assert.notEqual(await c.exited, 0);
    const said = c.stderr.join('\n');
    assert.match(said, /https:\/\/10\.96\.0\.1:443 is a ClusterIP/);
    assert.match(said, /KUBERNETES_SERVICE_HOST/);
    assert.match(said, /clientConnection\.kubeconfig/);
    assert.match(said, /apiServerViaClusterIP/);
    assert.equal(existsSync(pins), false, 'nothing was programmed');
  });

  it('with the shipped placeholder address, the agent stops at once and says so', async () => {
    const c = agentPod('placeholder', { 'config.conf': labConfig('ebpf', lab!.bpffsDir('placeholder')), 'kubeconfig.conf': configMapFile('kubeconfig.conf') });
    assert.notEqual(await c.exited, 0);
    assert.match(c.stderr.join('\n'), /placeholder https:\/\/api-server\.invalid:6443/);
  });

  it('with the shipped ConfigMap and the real address in its kubeconfig.conf, the agent syncs and serves', async () => {
    const shipped = configMapFile('kubeconfig.conf');
    assert.match(shipped, /server: https:\/\/api-server\.invalid:6443/);
    const pins = lab!.bpffsDir('agent');
    assert.equal(existsSync(pins), false, 'a node with no pins');
    const c = agentPod('shipped', { 'config.conf': labConfig('ebpf', pins), 'kubeconfig.conf': shipped.replace('https://api-server.invalid:6443', `https://${REAL_ADDRESS}`) });
    await c.waitFor((l) => l.msg === 'sources synced', 'the API server synced');
    const synced = await c.waitFor((l) => l.msg === 'synced', 'its first sync');
    assert.equal(synced.mode, 'ebpf');
    // What it programmed came from the API server: web's ClusterIP serves a pod.
    const r = await lab!.probe(lab!.pod('n0p0').netns, { targets: [{ proto: 'tcp', host: '10.96.0.10', port: 80 }], count: 4 });
    assert.ok(r.every((x) => x.ok && ['n0p1', 'n1p1'].includes(x.reply.pod)), JSON.stringify(r));
  });
});
