// Takeover: the agent in iptables, nftables or IPVS mode (kube-proxy's layouts) serves long-lived TCP connections
// and UDP flows through a ClusterIP (from a pod) and a NodePort (from the external client); it is
// stopped with SIGTERM (its rules stay, as kube-proxy's do when it is replaced) and the eBPF agent
// starts on the same node. None of the flows breaks or changes backend, new connections take the
// eBPF path (its per-service counters), and no KUBE-* rule of kube-proxy's is left. A stock
// `--ctstate INVALID -j DROP` rule in FORWARD stays in place throughout.
// IPVS is not in this machine's kernel: test/vm runs this file in the 6.1 guest with
// SWITCHYARD_TAKEOVER_MODES=ipvs.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { writeManifests } from '../cases/manifests.ts';
import { service, slice } from '../cases/objects.ts';
import { Lab, netnsPath } from '../lab/lab.ts';
import { until } from '../wait.ts';
import { SERVING_ARGS, startAgent, type RunningAgent } from './harness.ts';

const SESSION = fileURLToPath(new URL('../lab/session.ts', import.meta.url));
const GET = fileURLToPath(new URL('../lab/http-get.ts', import.meta.url));
const CLUSTER_IP = '10.96.0.60';
const PORT = 9100;
const NODE_PORT = 30190;
const BACKENDS = ['n0p1', 'n1p1'];
/** Bounds for conditions: generous, since the VM (qemu TCG) runs this file ten times slower. */
const WAIT_MS = 180_000;

interface Session {
  name: string;
  child: ChildProcess;
  answers: Array<{ seq: number; pod: string }>;
  errors: string[];
  summary: Promise<{ sent: number; answered: number; pods: string[]; errors: string[] }>;
}

type Mode = 'iptables' | 'nftables' | 'ipvs';
const MODES = (process.env.SWITCHYARD_TAKEOVER_MODES ?? 'iptables,nftables').split(',') as Mode[];
if (!MODES.includes('ipvs')) {
  describe('takeover from ipvs mode', () => {
    it('runs in the 6.1 VM (test/vm/vm.test.ts): this kernel has no IPVS', { skip: 'no IPVS in this kernel; the VM boot runs it' }, () => {});
  });
}

for (const mode of MODES) describe(`takeover from ${mode} mode`, () => {
  let lab: Lab;
  let manifests: string;
  const children: ChildProcess[] = [];
  let agent: RunningAgent | undefined;

  const spawnIn = (netns: string, args: string[]): ChildProcess => {
    const child = spawn('nsenter', [`--net=${netnsPath(netns)}`, '--', process.execPath, SESSION, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(child);
    // Swept with the lab even if this process is killed (n1's cgroup: no socket hooks there).
    writeFileSync(`${lab.cgroup(lab.nodes[1]!)}/cgroup.procs`, String(child.pid));
    return child;
  };

  const session = (name: string, netns: string, proto: 'tcp' | 'udp', host: string, port: number): Session => {
    const child = spawnIn(netns, ['client', JSON.stringify({ proto, host, port, intervalMs: 40 })]);
    const s: Session = { name, child, answers: [], errors: [], summary: undefined as never };
    s.summary = new Promise((resolve) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const m = JSON.parse(line) as { seq?: number; pod?: string; error?: string; summary?: Awaited<Session['summary']> };
        if (m.summary) resolve(m.summary);
        else if (m.error !== undefined) s.errors.push(m.error);
        else s.answers.push({ seq: m.seq!, pod: m.pod! });
      });
    });
    return s;
  };

  const nodeExec = (file: string, args: string[]): Promise<string> => lab.exec(lab.nodes[0]!.netns, file, args);

  before(async () => {
    lab = await Lab.create({ nodes: 2, podsPerNode: 2 });
    manifests = writeManifests();
    const svc = service({ name: 'hold', type: 'NodePort', clusterIPs: [CLUSTER_IP], ports: [{ name: 't', port: PORT, nodePort: NODE_PORT }, { name: 'u', port: PORT, protocol: 'UDP', nodePort: NODE_PORT }] });
    const eps = slice({ name: 'hold-v4', service: 'hold', ports: [{ name: 't', port: PORT }, { name: 'u', port: PORT, protocol: 'UDP' }], endpoints: [{ ip: '10.244.0.11', node: 'n0' }, { ip: '10.244.1.11', node: 'n1' }] });
    appendFileSync(join(manifests, 'services.yaml'), `---\n${stringify(svc)}`);
    appendFileSync(join(manifests, 'endpointslices.yaml'), `---\n${stringify(eps)}`);
    await Promise.all(
      BACKENDS.map(
        (pod) =>
          new Promise<void>((resolve, reject) => {
            const child = spawnIn(lab.pod(pod).netns, ['server', '--name', pod, '--port', String(PORT)]);
            createInterface({ input: child.stdout! }).on('line', (l) => l === 'ready' && resolve());
            child.once('exit', (code) => reject(new Error(`session server ${pod} exited (${code})`)));
          }),
      ),
    );
  });

  after(async () => {
    agent?.child.kill('SIGKILL');
    for (const c of children) c.kill('SIGKILL');
    await lab?.teardown();
    if (manifests !== undefined) rmSync(manifests, { recursive: true, force: true });
  });

  it('keeps every flow on its backend, moves new ones to eBPF and leaves no KUBE-* rule', async () => {
    agent = startAgent(lab, lab.nodes[0]!, manifests, [...SERVING_ARGS, '--proxy-mode', mode]);
    await agent.synced;
    // A rule many nodes have (Docker, distributions): translated flows must never turn INVALID.
    await nodeExec('iptables', ['-w', '5', '-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP']);
    const node = lab.nodes[0]!.ipv4;
    const pod = lab.pod('n0p0').netns;
    const ext = lab.external.netns;
    const sessions = [
      session('tcp ClusterIP 1', pod, 'tcp', CLUSTER_IP, PORT),
      session('tcp ClusterIP 2', pod, 'tcp', CLUSTER_IP, PORT),
      session('udp ClusterIP', pod, 'udp', CLUSTER_IP, PORT),
      session('tcp NodePort 1', ext, 'tcp', node, NODE_PORT),
      session('tcp NodePort 2', ext, 'tcp', node, NODE_PORT),
      session('udp NodePort', ext, 'udp', node, NODE_PORT),
    ];
    await until(`every session answered through the ${mode} rules`, () => sessions.every((s) => s.answers.length >= 5), WAIT_MS).catch((e: Error) => {
      throw new Error(`${e.message}: ${sessions.map((s) => `${s.name} ${s.answers.length} answers${s.errors.length > 0 ? ` (${s.errors.slice(-3).join(', ')})` : ''}`).join('; ')}`);
    });
    const backendOf = new Map(sessions.map((s) => [s.name, s.answers[0]!.pod]));

    // Replaced as kube-proxy is: SIGTERM, its rules stay.
    agent.child.kill('SIGTERM');
    await new Promise((res) => agent!.child.once('exit', res));
    if (mode === 'iptables') assert.match(await nodeExec('iptables-save', ['-t', 'nat']), /^-A KUBE-SERVICES /m);
    else if (mode === 'ipvs') assert.match(await nodeExec('ipvsadm', ['-L', '-n']), new RegExp(`^TCP  ${CLUSTER_IP.replaceAll('.', '\\.')}:${PORT} `, 'm'));
    else assert.match(await nodeExec('nft', ['list', 'tables']), /^table ip kube-proxy$/m);

    agent = startAgent(lab, lab.nodes[0]!, manifests, SERVING_ARGS);
    const synced = await agent.synced;
    assert.equal(synced.mode, 'ebpf');
    const took = agent.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('takeover:') && l.flows !== undefined).reduce((n, l) => n + Number(l.flows), 0);
    assert.ok(took >= sessions.length, `flows taken over: ${took}`);
    await until("kube-proxy's rules removed", () => agent!.logs.some((l) => typeof l.msg === 'string' && l.msg.startsWith('removed the rules')), WAIT_MS);
    const marks = new Map(sessions.map((s) => [s.name, s.answers.length]));
    await until('every session answered 25 more times after the takeover', () => sessions.every((s) => s.answers.length >= marks.get(s.name)! + 25), WAIT_MS).catch((e: Error) => {
      const stalled = sessions.filter((s) => s.answers.length < marks.get(s.name)! + 25).map((s) => `${s.name} (${s.errors.join(', ') || 'no answer'})`);
      throw new Error(`${e.message}: broken or stalled after the takeover: ${stalled.join('; ')}`);
    });

    const saved = `${await nodeExec('iptables-save', [])}${await nodeExec('ip6tables-save', [])}`;
    // kubelet's KUBE-FIREWALL (kube-proxy writes it too for localhost NodePorts) stays, as kube-proxy's cleanup leaves it.
    const left = saved.split('\n').filter((l) => /KUBE-/.test(l) && !/KUBE-FIREWALL/.test(l));
    assert.deepEqual(left, [], 'no KUBE-* chain or rule of a proxy is left');
    assert.match(saved, /-A FORWARD -m conntrack --ctstate INVALID -j DROP/);
    const tables = await nodeExec('nft', ['list', 'tables']);
    assert.doesNotMatch(tables, /kube-proxy/, 'no kube-proxy nftables table is left');
    // From nftables mode, netfilter's NAT hooks are held while the flows it translates live.
    if (mode === 'nftables') assert.match(tables, /^table ip switchyard-nat-hold$/m);
    // From IPVS mode, its virtual servers and kube-ipvs0 stay while the flows they translate live.
    if (mode === 'ipvs') {
      assert.ok(agent.logs.some((l) => typeof l.msg === 'string' && l.msg.includes('IPVS virtual servers and kube-ipvs0 stay')), 'the IPVS hold is logged');
      assert.match(await nodeExec('ipvsadm', ['-L', '-n']), new RegExp(`^TCP  ${CLUSTER_IP.replaceAll('.', '\\.')}:${PORT} `, 'm'));
    }

    // New connections take the eBPF path: its counters for the service port grow.
    const packets = async (): Promise<number> => {
      const body = (JSON.parse(await nodeExec(process.execPath, [GET, 'http://127.0.0.1:10249/metrics'])) as { body: string }).body;
      const m = /^switchyard_service_packets_total\{service_port="demo\/hold:t\/TCP\/v4",protocol="TCP",family="IPv4"\} (\d+)$/m.exec(body);
      return Number(m?.[1] ?? 0);
    };
    const before = await packets();
    const fresh = [session('tcp ClusterIP new', pod, 'tcp', CLUSTER_IP, PORT), session('tcp NodePort new', ext, 'tcp', node, NODE_PORT)];
    await until('new connections answered through eBPF', () => fresh.every((s) => s.answers.length >= 5), WAIT_MS);
    // The agent refreshes its datapath snapshot every 10 s.
    await until("eBPF's counters for the service port count the new connections", async () => (await packets()) >= before + 10, 60_000, 500);

    for (const s of [...sessions, ...fresh]) s.child.stdin!.end();
    for (const s of sessions) {
      const sum = await s.summary;
      assert.deepEqual(sum.errors, [], `${s.name}: no error`);
      assert.deepEqual(sum.pods, [backendOf.get(s.name)], `${s.name}: one backend throughout`);
      assert.ok(BACKENDS.includes(sum.pods[0]!));
      // TCP: every request answered (the connection never broke); UDP: the flow kept going.
      if (s.name.startsWith('tcp')) assert.ok(sum.answered >= sum.sent - 1, `${s.name}: ${sum.answered} of ${sum.sent} answered`);
    }
  });
});
