// The netns lab: N nodes x M pods plus an external client, built only from network
// namespaces on this machine, joined by a bridge in a "fabric" namespace. Nothing is created
// in the root namespace except pins below /sys/fs/bpf/<prefix>-*.
//
// Addresses (all inside the lab's own namespaces):
//   node i      eth0 10.254.0.(11+i)/24, fd00:254::(11+i)/64, default via 10.254.0.1 (absent router)
//   external    eth0 10.254.0.200/24,    fd00:254::200/64 (no route to any pod)
//   pod j of i  eth0 10.244.i.(10+j)/32, fd00:10:244:i::(10+j)/128, default via the node
//   node side of a pod's veth: veth<j>, holding 10.244.i.1/32 and fe80::1 as the pod's gateway
// With the narrowPath option, a second client ("far") behind two routers whose link is narrow:
//   far         eth0 10.254.9.200/24, fd00:254:9::200/64 (MTU 1500), default via edge
//   edge        eth1 10.254.9.1/24, fd00:254:9::1/64; eth0 10.254.8.2/24, fd00:254:8::2/64 (narrow)
//   wan         eth1 10.254.8.1/24, fd00:254:8::1/64 (narrow); eth0 on the fabric 10.254.0.2/24, fd00:254::2/64
//   nodes       route 10.254.8.0/23, fd00:254:8::/64 and fd00:254:9::/64 via wan
// Both ends of the narrow link share its MTU, so the far client's MSS is its own link's and only
// path MTU discovery (routers' frag-needed / packet too big) keeps a download going.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { formatIpv6, ipv6Bytes } from '../../control/bpf/codec.ts';
import { ipBatch, run } from './exec.ts';
import { mkdirSync } from 'node:fs';
import { cgroup2Root, runPrefix } from './names.ts';
import type { ProbeRequest, ProbeResult } from './probe.ts';
import { teardownNames, teardownNamesSync } from './sweep.ts';

export interface LabOptions {
  nodes?: number;
  podsPerNode?: number;
  /** Ports every pod (and node) server listens on, TCP and UDP. */
  ports?: number[];
  /** Defaults to the per-run prefix of this process. */
  prefix?: string;
  /** A second lab in the same process needs its own tag, e.g. "b". */
  tag?: string;
  /** A TCP port where pods stream bulk data on request (benchmarks). */
  bulkPort?: number;
  /** A far client behind two routers joined by a link of this MTU (see the address plan above). */
  narrowPath?: { mtu: number };
}

/** A router of the narrow path: its address on the fabric side and on the far side. */
export interface LabRouter extends LabHost {
  farIpv4: string;
  farIpv6: string;
}

export interface LabPod {
  /** Short name the pod's server answers with, e.g. "n0p1". */
  name: string;
  netns: string;
  node: LabNode;
  ipv4: string;
  ipv6: string;
  /** The node-side end of the pod's veth, inside the node's namespace. */
  hostIf: string;
}

export interface LabNode {
  name: string;
  netns: string;
  index: number;
  ipv4: string;
  ipv6: string;
  podCidrV4: string;
  podCidrV6: string;
  /** The node's interface towards the other nodes and the external client. */
  wireIf: string;
  pods: LabPod[];
}

export interface LabHost {
  name: string;
  netns: string;
  ipv4: string;
  ipv6: string;
}

const POD_SERVER = fileURLToPath(new URL('./pod-server.ts', import.meta.url));
const PROBE = fileURLToPath(new URL('./probe.ts', import.meta.url));

/** Labs alive in this process, torn down by the exit handlers if a test does not get to it. */
const live = new Set<Lab>();
let handlersInstalled = false;

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    for (const lab of live) lab.teardownSync();
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = (): void => {
      // A program with its own handler for this signal (the demo) ends its labs itself.
      if (process.listenerCount(signal) > 1) return;
      for (const lab of live) lab.teardownSync();
      process.off(signal, handler);
      process.kill(process.pid, signal);
    };
    process.on(signal, handler);
  }
}

/** Addresses are kept in the form sockets report them (RFC 5952), so tests can compare strings. */
function canonicalV6(addr: string): string {
  return formatIpv6(ipv6Bytes(addr));
}

export function netnsPath(netns: string): string {
  return `/run/netns/${netns}`;
}

/** The argv prefix that runs a command inside `netns` (what rule-mode adapters take as commandPrefix). */
export function inNetns(netns: string): string[] {
  return ['nsenter', `--net=${netnsPath(netns)}`, '--'];
}

export class Lab {
  readonly prefix: string;
  readonly nodes: LabNode[] = [];
  readonly pods: LabPod[] = [];
  readonly external: LabHost;
  /** With narrowPath: the client beyond the narrow link, and the routers either side of it. */
  readonly far: LabHost | undefined;
  readonly wan: LabRouter | undefined;
  readonly edge: LabRouter | undefined;
  private readonly narrowMtu: number | undefined;
  readonly fabric: string;
  readonly ports: number[];
  readonly bulkPort: number | undefined;
  private readonly servers: ChildProcess[] = [];
  private readonly namespaces: string[] = [];
  private torn = false;

  private constructor(options: LabOptions) {
    const base = options.prefix ?? runPrefix();
    this.prefix = options.tag === undefined ? base : `${base}-${options.tag}`;
    this.ports = options.ports ?? [8080];
    this.bulkPort = options.bulkPort;
    this.fabric = `${this.prefix}-fab`;
    this.external = { name: 'ext', netns: `${this.prefix}-ext`, ipv4: '10.254.0.200', ipv6: 'fd00:254::200' };
    this.narrowMtu = options.narrowPath?.mtu;
    if (this.narrowMtu !== undefined) {
      this.far = { name: 'far', netns: `${this.prefix}-far`, ipv4: '10.254.9.200', ipv6: 'fd00:254:9::200' };
      this.wan = { name: 'wan', netns: `${this.prefix}-wan`, ipv4: '10.254.0.2', ipv6: 'fd00:254::2', farIpv4: '10.254.8.1', farIpv6: 'fd00:254:8::1' };
      this.edge = { name: 'edge', netns: `${this.prefix}-edge`, ipv4: '10.254.8.2', ipv6: 'fd00:254:8::2', farIpv4: '10.254.9.1', farIpv6: 'fd00:254:9::1' };
    }
    for (let i = 0; i < (options.nodes ?? 2); i++) {
      const node: LabNode = {
        name: `n${i}`,
        netns: `${this.prefix}-n${i}`,
        index: i,
        ipv4: `10.254.0.${11 + i}`,
        ipv6: `fd00:254::${(11 + i).toString(16)}`,
        podCidrV4: `10.244.${i}.0/24`,
        podCidrV6: `${canonicalV6(`fd00:10:244:${i}::`)}/64`,
        wireIf: 'eth0',
        pods: [],
      };
      for (let j = 0; j < (options.podsPerNode ?? 3); j++) {
        const pod: LabPod = {
          name: `n${i}p${j}`,
          netns: `${this.prefix}-n${i}p${j}`,
          node,
          ipv4: `10.244.${i}.${10 + j}`,
          ipv6: canonicalV6(`fd00:10:244:${i}::${(10 + j).toString(16)}`),
          hostIf: `veth${j}`,
        };
        node.pods.push(pod);
        this.pods.push(pod);
      }
      this.nodes.push(node);
    }
  }

  /** Builds the lab and starts every server; tears down whatever was made if a step fails. */
  static async create(options: LabOptions = {}): Promise<Lab> {
    installExitHandlers();
    const lab = new Lab(options);
    live.add(lab);
    try {
      await lab.build();
      await lab.startServers();
      return lab;
    } catch (e) {
      await lab.teardown();
      throw e;
    }
  }

  /** Where a pin directory for this lab belongs; the sweep removes it with the lab. */
  bpffsDir(name = 'pins'): string {
    return `/sys/fs/bpf/${this.prefix}-${name}`;
  }

  /** A cgroup (v2) for a node's processes, for socket-level programs; swept with the lab. */
  cgroup(node: LabNode): string {
    const path = `${cgroup2Root()}/${this.prefix}-${node.name}`;
    mkdirSync(path, { recursive: true });
    return path;
  }

  pod(name: string): LabPod {
    const pod = this.pods.find((p) => p.name === name);
    if (pod === undefined) throw new Error(`no pod ${name}`);
    return pod;
  }

  private async addNamespace(netns: string, sysctls: string[]): Promise<void> {
    await run('ip', ['netns', 'add', netns]);
    this.namespaces.push(netns);
    const settings = [
      'net.ipv6.conf.all.accept_dad=0',
      'net.ipv6.conf.default.accept_dad=0',
      'net.ipv4.conf.all.rp_filter=0',
      'net.ipv4.conf.default.rp_filter=0',
      ...sysctls,
    ];
    await run('ip', ['netns', 'exec', netns, 'sysctl', '-q', '-w', ...settings]);
  }

  private async build(): Promise<void> {
    const forwarding = ['net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1'];
    await this.addNamespace(this.fabric, []);
    await this.addNamespace(this.external.netns, []);
    for (const node of this.nodes) await this.addNamespace(node.netns, forwarding);
    for (const pod of this.pods) await this.addNamespace(pod.netns, []);
    if (this.far !== undefined && this.wan !== undefined && this.edge !== undefined) {
      await this.addNamespace(this.far.netns, []);
      await this.addNamespace(this.wan.netns, forwarding);
      await this.addNamespace(this.edge.netns, forwarding);
    }

    await ipBatch(this.fabric, ['link set lo up', 'link add br0 type bridge', 'link set br0 up']);
    const wire = (netns: string, port: string): Promise<string> =>
      ipBatch(netns, [`link add eth0 type veth peer name ${port} netns ${this.fabric}`]);
    await wire(this.external.netns, 'ext');
    for (const node of this.nodes) await wire(node.netns, node.name);
    await ipBatch(this.fabric, ['ext', ...this.nodes.map((n) => n.name)].map((p) => `link set ${p} master br0 up`));
    if (this.far !== undefined) await this.buildNarrowPath();

    await ipBatch(this.external.netns, [
      'link set lo up',
      `addr add ${this.external.ipv4}/24 dev eth0`,
      `addr add ${this.external.ipv6}/64 dev eth0 nodad`,
      'link set eth0 up',
    ]);
    for (const node of this.nodes) {
      const lines = [
        'link set lo up',
        `addr add ${node.ipv4}/24 dev eth0`,
        `addr add ${node.ipv6}/64 dev eth0 nodad`,
        'link set eth0 up',
      ];
      // Like a real node, a default route (to a router that is not there): service addresses route
      // somewhere, so packets reach the FORWARD and OUTPUT hooks where iptables-mode rules act.
      lines.push('route add default via 10.254.0.1', 'route add ::/0 via fd00:254::1');
      if (this.wan !== undefined) lines.push(`route add 10.254.8.0/23 via ${this.wan.ipv4}`, `route add fd00:254:8::/64 via ${this.wan.ipv6}`, `route add fd00:254:9::/64 via ${this.wan.ipv6}`);
      for (const other of this.nodes) {
        if (other === node) continue;
        lines.push(`route add ${other.podCidrV4} via ${other.ipv4}`);
        lines.push(`route add ${other.podCidrV6} via ${other.ipv6}`);
      }
      for (const pod of node.pods) {
        lines.push(
          `link add ${pod.hostIf} type veth peer name eth0 netns ${pod.netns}`,
          `addr add 10.244.${node.index}.1/32 dev ${pod.hostIf}`,
          `addr add fe80::1/64 dev ${pod.hostIf} nodad`,
          `link set ${pod.hostIf} up`,
          `route add ${pod.ipv4}/32 dev ${pod.hostIf} scope link`,
          `route add ${pod.ipv6}/128 dev ${pod.hostIf}`,
        );
      }
      await ipBatch(node.netns, lines);
      for (const pod of node.pods) {
        await ipBatch(pod.netns, [
          'link set lo up',
          `addr add ${pod.ipv4}/32 dev eth0`,
          `addr add ${pod.ipv6}/128 dev eth0 nodad`,
          'link set eth0 up',
          `route add 10.244.${node.index}.1 dev eth0 scope link`,
          `route add default via 10.244.${node.index}.1 dev eth0`,
          'route add ::/0 via fe80::1 dev eth0',
        ]);
      }
    }
  }

  /** The far client, the routers and the narrow link between them (narrowPath). */
  private async buildNarrowPath(): Promise<void> {
    const [far, wan, edge, mtu] = [this.far!, this.wan!, this.edge!, this.narrowMtu!];
    await ipBatch(wan.netns, [`link add eth0 type veth peer name wan netns ${this.fabric}`]);
    await ipBatch(this.fabric, ['link set wan master br0 up']);
    await ipBatch(wan.netns, [`link add eth1 mtu ${mtu} type veth peer name eth0 mtu ${mtu} netns ${edge.netns}`]);
    await ipBatch(edge.netns, [`link add eth1 type veth peer name eth0 netns ${far.netns}`]);
    // Both routers: eth0 towards the fabric side, eth1 towards the far side, then their routes.
    const router = (r: typeof wan, routes: string[]): string[] => [
      'link set lo up',
      `addr add ${r.ipv4}/24 dev eth0`,
      `addr add ${r.ipv6}/64 dev eth0 nodad`,
      `addr add ${r.farIpv4}/24 dev eth1`,
      `addr add ${r.farIpv6}/64 dev eth1 nodad`,
      'link set eth0 up',
      'link set eth1 up',
      ...routes,
    ];
    await ipBatch(wan.netns, router(wan, [`route add 10.254.9.0/24 via ${edge.ipv4}`, `route add fd00:254:9::/64 via ${edge.ipv6}`]));
    await ipBatch(edge.netns, router(edge, [
      `route add default via ${wan.farIpv4}`,
      `route add ::/0 via ${wan.farIpv6}`,
    ]));
    await ipBatch(far.netns, [
      'link set lo up',
      `addr add ${far.ipv4}/24 dev eth0`,
      `addr add ${far.ipv6}/64 dev eth0 nodad`,
      'link set eth0 up',
      `route add default via ${edge.farIpv4}`,
      `route add ::/0 via ${edge.farIpv6}`,
    ]);
  }

  private startServer(netns: string, name: string): Promise<void> {
    const child = spawn(
      'nsenter',
      [
        `--net=${netnsPath(netns)}`, '--', process.execPath, POD_SERVER, '--name', name, '--ports', this.ports.join(','),
        '--parent', String(process.pid), '--lab', this.prefix, ...(this.bulkPort === undefined ? [] : ['--bulk-port', String(this.bulkPort)]),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    this.servers.push(child);
    return new Promise((resolve, reject) => {
      const lines = createInterface({ input: child.stdout! });
      // Generous: inside the emulated test VM (TCG) a node process takes seconds to start, and a
      // lab starts one per pod and node at once; on a loaded host (two VMs and a CPU-heavy
      // process beside the suite) 60 s was seen to be too little. A bound for failures only.
      const timer = setTimeout(() => reject(new Error(`server ${name} did not start`)), 180_000);
      lines.on('line', (line) => {
        if (line === 'ready') {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`server ${name} exited (${code})`));
      });
    });
  }

  private async startServers(): Promise<void> {
    await Promise.all([
      ...this.pods.map((p) => this.startServer(p.netns, p.name)),
      ...this.nodes.map((n) => this.startServer(n.netns, n.name)),
    ]);
  }

  /** Runs a command inside `netns` (network namespace only: bpffs and files stay visible). */
  exec(netns: string, file: string, args: readonly string[], input?: string): Promise<string> {
    const [nsenter, ...prefix] = inNetns(netns);
    return run(nsenter!, [...prefix, file, ...args], input);
  }

  /** Sends probes from inside `netns` and returns what the pods answered. */
  async probe(netns: string, request: ProbeRequest): Promise<ProbeResult[]> {
    const out = await this.exec(netns, process.execPath, [PROBE, JSON.stringify(request)]);
    return JSON.parse(out) as ProbeResult[];
  }

  /** Stops servers, deletes every namespace (and with them every link) and pin of this lab. */
  async teardown(): Promise<void> {
    if (this.torn) return;
    this.torn = true;
    live.delete(this);
    for (const s of this.servers) s.kill('SIGKILL');
    await teardownNames(this.prefix, this.namespaces);
  }

  /** Synchronous teardown for exit handlers. */
  teardownSync(): void {
    if (this.torn) return;
    this.torn = true;
    live.delete(this);
    for (const s of this.servers) s.kill('SIGKILL');
    teardownNamesSync(this.prefix, this.namespaces);
  }
}
