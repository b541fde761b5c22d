// Switchyard's OCI image (npm run image), run with runc as deploy/daemonset.yaml runs it: on the
// host network of a lab node, with the DaemonSet's capabilities only, read-only /proc/sys, the
// DaemonSet's bpffs, cgroup, /lib/modules, xtables-lock and config mounts, the shipped ConfigMap's
// configuration (pointed at the lab) and a manifests directory (standalone mode). Inside it the
// agent programs the lab node in eBPF mode and in iptables mode; /healthz answers, a ClusterIP is
// reached from a pod, and in iptables mode a stale UDP flow is cleared by the image's conntrack.
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { writeManifests } from '../cases/manifests.ts';
import { podOf, slices } from '../cases/semantics.ts';
import { Lab, netnsPath } from '../lab/lab.ts';
import { runPrefix } from '../lab/names.ts';
import { ensureImage, runPod, unpack, type Bundle, type Container } from './image.ts';
import { daemonSet, labConfig, type PodStandIns } from './pod-spec.ts';

const GET = fileURLToPath(new URL('../lab/http-get.ts', import.meta.url));

/**
 * Every program the agent runs, by the mode that runs it, with arguments that print a version
 * without needing the kernel (null: only its presence and its libraries are checked, since it
 * talks to the kernel at once: ipvsadm wants IPVS, which this kernel lacks).
 */
const BINARIES: Array<[string, string[] | null, string]> = [
  ['node', ['--version'], 'the agent'],
  ['ip', ['-V'], 'ebpf: addresses and link watch; ipvs: kube-ipvs0'],
  ['iptables-save', ['--version'], 'auto: the probe reads the nat table'],
  ...['iptables', 'ip6tables'].flatMap((base) => ['nft', 'legacy'].flatMap((v) => ['', '-save', '-restore'].map((s): [string, string[], string] => [`${base}-${v}${s}`, ['--version'], 'iptables and ipvs modes, cleanup (both variants)']))),
  ['nft', ['--version'], 'nftables mode, the probe, cleanup'],
  ['ipset', null, 'ipvs mode'],
  ['ipvsadm', null, 'ipvs mode, the probe'],
  ['sysctl', ['--version'], 'ipvs mode'],
  ['conntrack', ['--version'], 'rule modes: stale UDP flows'],
  ['modprobe', ['--version'], 'iptables and ipvsadm load their modules with it'],
];

/** Runs inside the container: where each binary is, whether its libraries resolve and it runs. */
const LOOK_INSIDE = `
const fs = require('node:fs'), cp = require('node:child_process');
const out = {};
for (const [name, args] of JSON.parse(process.argv[1])) {
  const dir = process.env.PATH.split(':').find((d) => { try { fs.accessSync(d + '/' + name, fs.constants.X_OK); return true; } catch { return false; } });
  if (dir === undefined) { out[name] = { missing: true }; continue; }
  const ldd = cp.execFileSync('ldd', [dir + '/' + name], { encoding: 'utf8' });
  let ran = 'not run';
  if (args !== null) { try { cp.execFileSync(name, args, { stdio: 'pipe', timeout: 10000 }); ran = 'ok'; } catch (e) { ran = String(e.stderr || e.message).trim(); } }
  out[name] = { libsMissing: ldd.split('\\n').filter((l) => l.includes('not found')).map((l) => l.trim()), ran };
}
let procSys = 'writable';
try { fs.writeFileSync('/proc/sys/net/ipv4/ip_forward', '1'); } catch (e) { procSys = e.code; }
const capEff = /CapEff:\\s*(\\w+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1];
console.log(JSON.stringify({ binaries: out, procSys, capEff }));
`;

let bundle: Bundle | undefined;
const prefix = runPrefix();

before(async () => {
  const built = await ensureImage();
  const t0 = performance.now();
  bundle = await unpack(`${tmpdir()}/${prefix}-image-bundle`);
  process.stderr.write(`# image: ${built === 0 ? 'up to date' : `built in ${built.toFixed(0)} s`}, unpacked in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
});
after(() => bundle?.remove());

/** A lab, the config volume (config.conf + manifests) and the agent's container on n0. */
async function podLab(mode: 'ebpf' | 'iptables'): Promise<{ lab: Lab; container: Container; configDir: string; stop: () => Promise<void> }> {
  const lab = await Lab.create({ nodes: 2, podsPerNode: 3, tag: mode });
  const configDir = `${tmpdir()}/${lab.prefix}-config`;
  let container: Container | undefined;
  const stop = async (): Promise<void> => {
    await container?.remove();
    await lab.teardown();
    rmSync(configDir, { recursive: true, force: true });
  };
  try {
    mkdirSync(`${configDir}/manifests`, { recursive: true });
    writeManifests(`${configDir}/manifests`);
    writeFileSync(`${configDir}/config.conf`, labConfig(mode, lab.bpffsDir('agent')));
    const n0 = lab.nodes[0]!;
    const standIns: PodStandIns = {
      netnsPath: netnsPath(n0.netns),
      nodeName: n0.name,
      hostPaths: {
        '/sys/fs/bpf': '/sys/fs/bpf',
        // The node's cgroup root: here the lab node's cgroup, so the socket hooks see only its processes.
        '/sys/fs/cgroup': lab.cgroup(n0),
        '/lib/modules': '/lib/modules',
        '/run/xtables.lock': '/run/xtables.lock',
      },
      configMaps: { switchyard: configDir },
      cgroupsPath: `/${lab.prefix}-ctr`,
      extraArgs: ['--manifests=/var/lib/switchyard/manifests'],
    };
    container = runPod(bundle!, `${lab.prefix}-agent`, standIns);
    await container.waitFor((l) => l.msg === 'synced', 'its first sync');
    // The first sync can land before the servers listen: wait for them to say they do.
    await container.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('serving health on'), 'its servers listening');
    return { lab, container, configDir, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

async function healthz(lab: Lab): Promise<number> {
  const r = JSON.parse(await lab.exec(lab.nodes[0]!.netns, process.execPath, [GET, 'http://127.0.0.1:10256/healthz'])) as { status: number };
  return r.status;
}

async function clusterIpFromPod(lab: Lab): Promise<string[]> {
  const r = await lab.probe(lab.pod('n0p0').netns, { targets: [{ proto: 'tcp', host: '10.96.0.10', port: 80 }], count: 6 });
  return r.map((x) => (x.ok ? x.reply.pod : `error: ${x.error}`));
}

describe('the image', () => {
  it('carries every binary the modes call, with their libraries; /proc/sys is read-only and only the DaemonSet\'s capabilities are held', async () => {
    const lab = await Lab.create({ nodes: 1, podsPerNode: 1, tag: 'look' });
    let container: Container | undefined;
    try {
      container = runPod(bundle!, `${lab.prefix}-look`, {
        netnsPath: netnsPath(lab.nodes[0]!.netns),
        nodeName: 'n0',
        hostPaths: { '/sys/fs/bpf': '/sys/fs/bpf', '/sys/fs/cgroup': lab.cgroup(lab.nodes[0]!), '/lib/modules': '/lib/modules', '/run/xtables.lock': '/run/xtables.lock' },
        configMaps: { switchyard: tmpdir() },
        cgroupsPath: `/${lab.prefix}-ctr`,
        command: ['node', '-e', LOOK_INSIDE, JSON.stringify(BINARIES.map(([name, args]) => [name, args]))],
      });
      const code = await container.exited;
      assert.equal(code, 0, container.stderr.join('\n'));
      const seen = container.logs.find((l) => 'binaries' in l) as { binaries: Record<string, { missing?: true; libsMissing?: string[]; ran?: string }>; procSys: string; capEff: string };
      for (const [name, , why] of BINARIES) {
        const b = seen.binaries[name]!;
        assert.ok(!b.missing, `${name} (${why}) is in the image`);
        assert.deepEqual(b.libsMissing, [], `${name}'s libraries`);
        assert.ok(b.ran === 'ok' || b.ran === 'not run', `${name} runs: ${b.ran}`);
      }
      assert.equal(seen.procSys, 'EROFS', '/proc/sys is read-only, as in a pod');
      // Exactly the DaemonSet's capabilities (bit numbers from linux/capability.h).
      const bits: Record<string, bigint> = { NET_ADMIN: 12n, NET_RAW: 13n, SYS_MODULE: 16n, SYS_ADMIN: 21n, SYS_RESOURCE: 24n, PERFMON: 38n, BPF: 39n };
      const added = daemonSet().spec.template.spec.containers[0].securityContext.capabilities.add as string[];
      assert.deepEqual(added.filter((c) => bits[c] === undefined), [], 'a capability the test knows the bit of');
      assert.equal(BigInt(`0x${seen.capEff}`), added.reduce((m, c) => m | (1n << bits[c]!), 0n), `CapEff ${seen.capEff} for ${added.join(', ')}`);
    } finally {
      await container?.remove();
      await lab.teardown();
    }
  });
});

describe('the image in eBPF mode', () => {
  let env: Awaited<ReturnType<typeof podLab>> | undefined;
  before(async () => {
    env = await podLab('ebpf');
  });
  after(async () => {
    await env?.stop();
  });

  it('loads and pins the datapath through the DaemonSet\'s bpffs mount, serves /healthz and a ClusterIP to a pod', async () => {
    const { lab, container } = env!;
    const synced = container.logs.find((l) => l.msg === 'synced')!;
    assert.equal(synced.mode, 'ebpf');
    assert.ok(readdirSync(lab.bpffsDir('agent')).includes('sy_frontends'), 'the maps are pinned on the host\'s bpffs');
    assert.equal(await healthz(lab), 200);
    const pods = await clusterIpFromPod(lab);
    assert.ok(pods.every((p) => ['n0p1', 'n1p1'].includes(p)), pods.join(', '));
  });
});

describe('the image in iptables mode', () => {
  let env: Awaited<ReturnType<typeof podLab>> | undefined;
  before(async () => {
    env = await podLab('iptables');
  });
  after(async () => {
    await env?.stop();
  });

  it('programs kube-proxy\'s rules, serves /healthz and a ClusterIP to a pod', async () => {
    const { lab, container } = env!;
    const synced = container.logs.find((l) => l.msg === 'synced')!;
    assert.equal(synced.mode, 'iptables');
    assert.equal(synced.conntrackError, undefined);
    const rules = await lab.exec(lab.nodes[0]!.netns, 'iptables-save', ['-t', 'nat']);
    assert.match(rules, /^-A KUBE-SERVICES .*"demo\/web:http cluster IP".* -j KUBE-SVC-/m);
    assert.equal(await healthz(lab), 200);
    const pods = await clusterIpFromPod(lab);
    assert.ok(pods.every((p) => ['n0p1', 'n1p1'].includes(p)), pods.join(', '));
  });

  it('clears a UDP flow to a removed endpoint with the image\'s conntrack, and the flow moves on', async () => {
    const { lab, container, configDir } = env!;
    // web's dns port: UDP 10.96.0.10:53 -> n0p1 or n1p1, one flow from source port 40053.
    const send = async (): Promise<string> => {
      const r = (await lab.probe(lab.pod('n0p0').netns, { targets: [{ proto: 'udp', host: '10.96.0.10', port: 53 }], sourcePort: 40053, count: 1, timeoutMs: 3000 }))[0]!;
      assert.ok(r.ok, r.ok ? '' : r.error);
      return r.reply.pod;
    };
    const first = await send();
    const edited = slices.map((s) => (s.metadata?.name === 'web-v4' ? { ...s, endpoints: (s.endpoints ?? []).filter((e) => podOf(e.addresses[0]!) !== first) } : s));
    writeFileSync(`${configDir}/manifests/endpointslices.yaml`, edited.map((s) => stringify(s)).join('---\n'));
    const line = await container.waitFor((l) => l.msg === 'synced' && (Number(l.staleUdpFlowsDeleted) > 0 || l.conntrackError !== undefined), 'a sync that cleared the stale flow');
    assert.equal(line.conntrackError, undefined);
    assert.ok(Number(line.staleUdpFlowsDeleted) >= 1, JSON.stringify(line));
    const now = await send();
    assert.notEqual(now, first, 'the flow reaches the remaining endpoint');
  });
});
