// Path MTU discovery through the eBPF datapath, with real packets and tx offloads on. A far client
// sits behind a narrow link (MTU 1280 between two routers; its own link, and so its MSS, is 1500)
// and downloads 4 MiB from a pod through a NodePort of node n0 (eTP Cluster: SNAT to n0, the
// answers translated back on n0 and sent on past its stack).
//   - The routers find the answers too big: their frag-needed / packet too big names n0's address
//     and the NodePort; the datapath translates it (include/icmp.h) so the backend learns the path
//     MTU for the flow it sees (backend -> n0:SNAT port).
//   - n0's own route to the far client has MTU 1280 and the router sends no errors (a path that
//     drops ICMP): the datapath must answer frag-needed / packet too big itself for what it
//     redirects, as the kernel's forwarding would, quoting the packet as the backend sent it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { compileDatapath } from '../../control/backends/ebpf/compile.ts';
import type { ChangeTracker } from '../../control/model/tracker.ts';
import { service, slice } from '../cases/objects.ts';
import { Lab, type LabPod } from '../lab/lab.ts';
import { programNode, type ProgrammedNode } from './ebpf-lab.ts';

const LOAD = fileURLToPath(new URL('../lab/load.ts', import.meta.url));
const BULK_PORT = 5001;
const BYTES = 4 << 20;
const MTU = 1280;

/** One NodePort per backend, so each test knows the path its answers take. */
const SERVICES = [
  { name: 'pmtu-router-remote', pod: 'n1p0', nodePort: 30090 },
  { name: 'pmtu-router-local', pod: 'n0p0', nodePort: 30091 },
  { name: 'pmtu-node-remote', pod: 'n1p1', nodePort: 30092 },
  { name: 'pmtu-node-local', pod: 'n0p1', nodePort: 30093 },
] as const;

function fill(lab: Lab): (tracker: ChangeTracker) => void {
  return (tracker) => {
    SERVICES.forEach(({ name, pod, nodePort }, i) => {
      tracker.upsertService(service({ name, type: 'NodePort', clusterIPs: [`10.96.0.${120 + i}`, `fd00:96::${(0x120 + i).toString(16)}`], ports: [{ port: BULK_PORT, nodePort, targetPort: BULK_PORT }] }));
      const p = lab.pod(pod);
      for (const family of [4, 6] as const) {
        tracker.upsertSlice(slice({ name: `${name}-${family}`, service: name, family, ports: [{ port: BULK_PORT }], endpoints: [{ ip: family === 4 ? p.ipv4 : p.ipv6, node: p.node.name }] }));
      }
    });
  };
}

/** ICMP errors a namespace sent: frag-needed and other unreachables (IPv4), packet too big (IPv6). */
async function icmpSent(lab: Lab, netns: string): Promise<{ unreach4: number; tooBig6: number }> {
  const snmp = (await lab.exec(netns, 'cat', ['/proc/net/snmp'])).split('\n').filter((l) => l.startsWith('Icmp:'));
  const names = snmp[0]?.split(/\s+/) ?? [];
  const values = snmp[1]?.split(/\s+/) ?? [];
  const unreach4 = Number(values[names.indexOf('OutDestUnreachs')]);
  const m = /^Icmp6OutPktTooBigs\s+(\d+)/m.exec(await lab.exec(netns, 'cat', ['/proc/net/snmp6']));
  return { unreach4, tooBig6: Number(m?.[1]) };
}

describe('eBPF datapath: path MTU discovery through a NodePort (lab, narrow path)', () => {
  let lab: Lab;
  const nodes: ProgrammedNode[] = [];

  before(async () => {
    lab = await Lab.create({ nodes: 2, podsPerNode: 2, bulkPort: BULK_PORT, narrowPath: { mtu: MTU } });
    // Offloads on where the answers are made and forwarded (veth's defaults, said explicitly):
    // the backends send GSO packets, which only the routers' forwarding cuts to the path MTU.
    for (const netns of [...lab.pods.map((p) => p.netns), ...lab.nodes.map((n) => n.netns)]) {
      await lab.exec(netns, 'ethtool', ['-K', 'eth0', 'tx', 'on', 'tso', 'on', 'gso', 'on']);
    }
    for (const n of lab.nodes) nodes.push(programNode(lab, n, fill(lab)));
    for (const n of nodes) assert.deepEqual(n.datapath.sync(compileDatapath(n.tracker.state())).failed, []);
  });

  after(async () => {
    for (const n of nodes) n.datapath.close();
    await lab?.teardown();
  });

  const download = async (host: string, port: number): Promise<number> => {
    const out = await lab.exec(lab.far!.netns, process.execPath, [LOAD, JSON.stringify({ mode: 'bulk', host, port, bytes: BYTES, idleMs: 15_000 })]);
    return (JSON.parse(out) as { bytes: number }).bytes;
  };

  /** The path MTU the backend learnt towards n0 (its view of the client), from its route cache. */
  const learntMtu = async (pod: LabPod, family: 4 | 6): Promise<number | undefined> => {
    const n0 = lab.nodes[0]!;
    const out = await lab.exec(pod.netns, 'ip', [`-${family}`, 'route', 'get', family === 4 ? n0.ipv4 : n0.ipv6]);
    const m = /\bmtu (\d+)/.exec(out);
    return m ? Number(m[1]) : undefined;
  };

  for (const { name, pod } of SERVICES.filter((s) => s.name.startsWith('pmtu-router'))) {
    const where = pod.startsWith('n0') ? 'on the node' : 'on another node';
    it(`a router's frag-needed / packet too big reaches the backend ${where}: 4 MiB arrive whole, IPv4 and IPv6`, { timeout: 120_000 }, async () => {
      const svc = SERVICES.find((s) => s.name === name)!;
      const backend = lab.pod(pod);
      const n0 = lab.nodes[0]!;
      for (const family of [4, 6] as const) {
        const sentBefore = await icmpSent(lab, lab.wan!.netns);
        const got = await download(family === 4 ? n0.ipv4 : `${n0.ipv6}`, svc.nodePort);
        assert.equal(got, BYTES, `IPv${family}: the download completes`);
        const sentAfter = await icmpSent(lab, lab.wan!.netns);
        if (family === 4) assert.ok(sentAfter.unreach4 > sentBefore.unreach4, 'the router sent frag-needed');
        else assert.ok(sentAfter.tooBig6 > sentBefore.tooBig6, 'the router sent packet too big');
        assert.equal(await learntMtu(backend, family), MTU, `IPv${family}: the backend learnt the path MTU`);
      }
    });
  }

  it('the node answers for what it redirects (its route to the client has MTU 1280 locked, the router sends no errors): 4 MiB arrive whole from backends on both nodes, IPv4 and IPv6', { timeout: 240_000 }, async () => {
    const n0 = nodes[0]!;
    // Locked: bpf_fib_lookup holds packets against a route's MTU only when it is locked (or with
    // ip_forward_use_pmtu), where ip_forward honours any route MTU. (The node's own device MTU
    // cannot stand in for it here: veth lets GSO packets through whatever their segments' size.)
    await lab.exec(n0.node.netns, 'ip', ['-4', 'route', 'replace', '10.254.8.0/23', 'via', lab.wan!.ipv4, 'mtu', 'lock', String(MTU)]);
    for (const net of ['fd00:254:8::/64', 'fd00:254:9::/64']) await lab.exec(n0.node.netns, 'ip', ['-6', 'route', 'replace', net, 'via', lab.wan!.ipv6, 'mtu', 'lock', String(MTU)]);
    // A path that drops ICMP: without the node's own errors the download stalls.
    await lab.exec(lab.wan!.netns, 'nft', ['-f', '-'], [
      'table inet sy_pmtu {',
      '  chain out {',
      '    type filter hook output priority 0; policy accept;',
      '    icmp type destination-unreachable drop',
      '    icmpv6 type packet-too-big drop',
      '  }',
      '}',
      '',
    ].join('\n'));
    for (const { name, pod } of SERVICES.filter((s) => s.name.startsWith('pmtu-node'))) {
      const svc = SERVICES.find((s) => s.name === name)!;
      for (const family of [4, 6] as const) {
        const before = n0.datapath.drops()['frag-needed'];
        const got = await download(family === 4 ? n0.node.ipv4 : n0.node.ipv6, svc.nodePort);
        assert.equal(got, BYTES, `${pod}, IPv${family}: the download completes`);
        assert.ok(n0.datapath.drops()['frag-needed'] > before, `${pod}, IPv${family}: too big packets were answered (and counted)`);
        assert.equal(await learntMtu(lab.pod(pod), family), MTU, `${pod}, IPv${family}: the backend learnt the path MTU`);
      }
    }
  });
});
