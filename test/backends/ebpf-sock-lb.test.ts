// Socket-level load balancing for processes on the node (bpf/include/sock.h), with real sockets
// of a process in a lab node's cgroup: sockets connected to a backend that is then removed are
// destroyed (bpf/sock-destroy.c, bpf_sock_destroy of Linux 6.5), an unconnected UDP socket keeps
// one backend, rev-NAT is kept per protocol, and IPv6 sockets reach IPv4 services through
// v4-mapped addresses.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cgroupDetach, type CgroupAttachType } from '../../control/bpf/attach.ts';
import { sockKey, sockRevNatValue } from '../../control/bpf/layout.ts';
import { kernelFunctionExists } from '../../control/bpf/kernel.ts';
import { compileDatapath } from '../../control/backends/ebpf/compile.ts';
import { retireSockRevNat, SOCK_DESTROY_KFUNC, SocketTerminator, type DestroyedSocket } from '../../control/backends/ebpf/sockets.ts';
import { u32 } from '../../control/bpf/codec.ts';
import { native } from '../../control/bpf/native.ts';
import { BpfMap, countEntries, MAP_TYPE } from '../../control/bpf/map.ts';
import { existsSync } from 'node:fs';
import { service, slice, type EndpointSpec } from '../cases/objects.ts';
import { Lab, netnsPath } from '../lab/lab.ts';
import { SockClient, type Event } from '../lab/sock-client.ts';
import { until } from '../wait.ts';
import { programNode, type ProgrammedNode } from './ebpf-lab.ts';

const HOOKS = ['connect4', 'connect6', 'sendmsg4', 'sendmsg6', 'recvmsg4', 'recvmsg6', 'getpeername4', 'getpeername6'] as const;
const BULK = 9000; // the pods' bulk port holds a TCP connection open until the client asks for data
const HOLD_IP = '10.96.7.1'; // TCP 80 -> BULK
const DNS_IP = '10.96.7.2'; // UDP 53 -> 8080
/** The services of this test: ClusterIP, protocol, and the pods n0p<j> that are their endpoints. */
const SERVICES: Record<string, { ip: string; proto: 'TCP' | 'UDP' }> = {
  hold: { ip: HOLD_IP, proto: 'TCP' },
  dns: { ip: DNS_IP, proto: 'UDP' },
  // For the reset test: pod 0 leaves the gone-* services, stays in also-tcp (the same address and
  // port, another service port), the stay-* services keep pod 1.
  'gone-tcp': { ip: '10.96.7.3', proto: 'TCP' },
  'gone-udp': { ip: '10.96.7.4', proto: 'UDP' },
  'also-tcp': { ip: '10.96.7.5', proto: 'TCP' },
  'stay-tcp': { ip: '10.96.7.6', proto: 'TCP' },
  'stay-udp': { ip: '10.96.7.7', proto: 'UDP' },
};
const ip = (name: string): string => SERVICES[name]!.ip;
const show = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? String(x) : x));

describe('eBPF socket-level load balancing: sockets of node processes', () => {
  let lab: Lab;
  let p: ProgrammedNode;
  let client: SockClient;
  let terminator: SocketTerminator | undefined;
  const ep = (j: number): EndpointSpec => ({ ip: `10.244.0.${10 + j}`, node: 'n0' });
  const endpoints: Record<string, number[]> = { hold: [0, 1, 2], dns: [0, 1, 2], 'gone-tcp': [0], 'gone-udp': [0], 'also-tcp': [0], 'stay-tcp': [1], 'stay-udp': [1] };

  function fill(tracker: ProgrammedNode['tracker']): void {
    for (const [name, svc] of Object.entries(SERVICES)) {
      tracker.upsertService(service({ name, clusterIPs: [svc.ip], ports: [{ name: 'p', port: svc.proto === 'TCP' ? 80 : 53, protocol: svc.proto, targetPort: svc.proto === 'TCP' ? BULK : 8080 }] }));
    }
    writeSlices(tracker);
  }
  function writeSlices(tracker: ProgrammedNode['tracker']): void {
    for (const [name, svc] of Object.entries(SERVICES)) {
      tracker.upsertSlice(slice({ name: `${name}-1`, service: name, ports: [{ name: 'p', port: svc.proto === 'TCP' ? BULK : 8080, protocol: svc.proto }], endpoints: endpoints[name]!.map(ep) }));
    }
  }
  /** A sync as the agent makes it (EbpfBackend.sync): the socket iterators run when backends went. */
  function resync(): DestroyedSocket[] {
    writeSlices(p.tracker);
    p.tracker.flush();
    const r = p.datapath.sync(compileDatapath(p.tracker.state()));
    assert.deepEqual(r.failed, []);
    return r.backendsRemoved > 0 && terminator !== undefined ? terminator.run() : [];
  }

  before(async () => {
    lab = await Lab.create({ nodes: 1, podsPerNode: 3, ports: [8080], bulkPort: BULK, tag: 'sock' });
    const n = lab.nodes[0]!;
    p = programNode(lab, n, fill);
    if (kernelFunctionExists(SOCK_DESTROY_KFUNC)) {
      terminator = SocketTerminator.open({ datapath: p.datapath, pinDir: lab.bpffsDir(`dp-${n.name}`), netnsPath: netnsPath(n.netns), log: () => {} });
    }
    client = new SockClient(netnsPath(n.netns), p.cgroup);
    await client.ready();
  });
  after(async () => {
    client?.stop();
    terminator?.close();
    if (p !== undefined) {
      for (const hook of HOOKS) cgroupDetach(p.cgroup, hook as CgroupAttachType, p.datapath.programFd(`sy_sock_${hook}`));
      p.datapath.close();
    }
    await lab?.teardown();
  });

  it('an unconnected UDP socket sends every datagram to one backend; sockets spread', async () => {
    const one = await client.ask({ op: 'udpu', id: 'u1', host: DNS_IP, port: 53, count: 50 }, 'replies');
    const pods = one.pods as string[];
    assert.equal(pods.length, 50);
    assert.equal(new Set(pods).size, 1, `one backend for one socket: ${pods.join(' ')}`);
    assert.deepEqual(one.from, [DNS_IP], 'recvmsg shows the service address');
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const r = await client.ask({ op: 'udpu', id: `spread${i}`, host: DNS_IP, port: 53, count: 1 }, 'replies');
      seen.add((r.pods as string[])[0]!);
      client.send({ op: 'close', id: `spread${i}` });
    }
    assert.ok(seen.size > 1, `20 sockets reached ${[...seen].join(' ')}`);
  });

  it('an unconnected UDP socket picks again once its backend left the service', async () => {
    const first = ((await client.ask({ op: 'udpu', id: 'u2', host: DNS_IP, port: 53, count: 5 }, 'replies')).pods as string[])[0]!;
    const gone = Number(first.slice(-1));
    endpoints.dns = [0, 1, 2].filter((j) => j !== gone);
    resync();
    const after = (await client.ask({ op: 'udpu', id: 'u2', host: DNS_IP, port: 53, count: 20 }, 'replies')).pods as string[];
    assert.equal(new Set(after).size, 1, `one backend again: ${after.join(' ')}`);
    assert.notEqual(after[0], first);
    endpoints.dns = [0, 1, 2];
    resync();
  });

  it('rev-NAT is kept per protocol', async () => {
    const udpEntries = countEntries(p.datapath.object.mapDescription('sy_sock_revnat_udp').fd);
    const tcpBefore = countEntries(p.datapath.object.mapDescription('sy_sock_revnat_tcp').fd);
    await client.ask({ op: 'tcp', id: 'rn', host: HOLD_IP, port: 80 }, 'connected');
    assert.equal(countEntries(p.datapath.object.mapDescription('sy_sock_revnat_tcp').fd), tcpBefore + 1);
    assert.equal(countEntries(p.datapath.object.mapDescription('sy_sock_revnat_udp').fd), udpEntries);
    assert.equal((await client.ask({ op: 'peer', id: 'rn' }, 'peer')).peer, HOLD_IP, 'getpeername shows the service address');
    client.send({ op: 'close', id: 'rn' });
  });

  it('an IPv6 socket reaches an IPv4 service through its v4-mapped address', async () => {
    const c = await client.ask({ op: 'tcp', id: 'm1', host: `::ffff:${HOLD_IP}`, port: 80 }, 'connected');
    assert.equal(c.family, 'IPv6');
    assert.equal((await client.ask({ op: 'peer', id: 'm1' }, 'peer')).peer, `::ffff:${HOLD_IP}`);
    await client.ask({ op: 'send', id: 'm1', data: '00000010' }, 'data'); // the backend streams 16 bytes
    client.send({ op: 'close', id: 'm1' });
    const u = await client.ask({ op: 'udp', id: 'm2', host: `::ffff:${DNS_IP}`, port: 53 }, 'reply');
    assert.equal(u.from, `::ffff:${DNS_IP}`);
    client.send({ op: 'close', id: 'm2' });
    const many = await client.ask({ op: 'udpu', id: 'm3', host: `::ffff:${DNS_IP}`, port: 53, count: 10 }, 'replies');
    assert.equal(new Set(many.pods as string[]).size, 1);
    assert.deepEqual(many.from, [`::ffff:${DNS_IP}`]);
    client.send({ op: 'close', id: 'm3' });
  });

  it('without the socket iterators the datapath still loads, and the log says so once', () => {
    const said: string[] = [];
    const none = SocketTerminator.open({ datapath: p.datapath, pinDir: lab.bpffsDir('dp-n0'), object: '/nonexistent/sock-destroy.o', log: (_f, m) => said.push(m) });
    assert.equal(none, undefined);
    assert.equal(said.length, 1);
    assert.match(said[0]!, kernelFunctionExists(SOCK_DESTROY_KFUNC) ? /did not load/ : new RegExp(`no ${SOCK_DESTROY_KFUNC}`));
  });

  it('the single rev-NAT table of layout 2 moves into the per-protocol ones, its pin goes', () => {
    const pinDir = lab.bpffsDir('dp-n0');
    const fd = native().mapCreate(MAP_TYPE.LRU_HASH, sockKey.size, 4, 1024, 'sy_sock_revnat');
    const old = new BpfMap(fd, sockKey, u32, { ownsFd: true });
    const k = { cookie: 424242n, addr: '10.244.0.12', port: 8080, family: 4 };
    old.set(k, 7);
    old.pin(`${pinDir}/sy_sock_revnat`);
    old.close();
    assert.equal(retireSockRevNat(p.datapath.object, pinDir), 1);
    assert.equal(existsSync(`${pinDir}/sy_sock_revnat`), false);
    for (const name of ['sy_sock_revnat_tcp', 'sy_sock_revnat_udp']) {
      const m = p.datapath.object.map(name, sockKey, sockRevNatValue);
      assert.deepEqual(m.get(k), { revNatId: 7, backendId: 0, serviceId: 0 });
      m.delete(k);
    }
    assert.equal(retireSockRevNat(p.datapath.object, pinDir), 0);
  });

  it('sockets connected to a removed backend are reset; others stay', async (t) => {
    // Kernels before 6.5 (the test VM's 6.1 and 5.10): the test above covers what the agent does there.
    if (terminator === undefined) return t.skip(`the kernel has no ${SOCK_DESTROY_KFUNC} (Linux 6.5): sockets are not reset there`);
    // To be reset: TCP and connected UDP through the services pod 0 leaves, IPv4 and v4-mapped.
    const reset = { t1: ip('gone-tcp'), t2: `::ffff:${ip('gone-tcp')}` };
    const resetUdp = { d1: ip('gone-udp'), d2: `::ffff:${ip('gone-udp')}` };
    // To stay: the same backend through another service port, other backends, and pod 0 itself
    // reached by its address (no translation: the hooks never touched that socket).
    const stay = { s1: ip('also-tcp'), s2: ip('stay-tcp'), s3: `::ffff:${ip('stay-tcp')}`, direct: '10.244.0.10' };
    const stayUdp = { s4: ip('stay-udp') };
    for (const [id, host] of Object.entries({ ...reset, ...stay })) await client.ask({ op: 'tcp', id, host, port: id === 'direct' ? BULK : 80 }, 'connected');
    for (const [id, host] of Object.entries({ ...resetUdp, ...stayUdp })) await client.ask({ op: 'udp', id, host, port: 53 }, 'reply');
    endpoints['gone-tcp'] = [];
    endpoints['gone-udp'] = [];
    const t0 = performance.now();
    const destroyed = resync();
    assert.deepEqual(destroyed.map((d) => `${d.proto} ${d.backend}:${d.port}`).sort(), ['tcp 10.244.0.10:9000', 'tcp 10.244.0.10:9000', 'udp 10.244.0.10:8080', 'udp 10.244.0.10:8080'], show(destroyed));
    const errors = (): Event[] => client.errors();
    await until('the sockets of the removed backend see their reset', () => errors().length === 4);
    const ms = performance.now() - t0;
    assert.deepEqual(errors().map((e) => e.id).sort(), [...Object.keys(reset), ...Object.keys(resetUdp)].sort());
    for (const e of errors()) assert.match(String(e.code), /^(ECONNABORTED|ECONNRESET)$/, show(e));
    t.diagnostic(`${destroyed.length} sockets reset (${errors().map((e) => String(e.code)).join(' ')}) ${ms.toFixed(1)} ms after the sync began`);
    // The others still carry data.
    for (const id of Object.keys(stay)) await client.ask({ op: 'send', id, data: '00000001' }, 'data');
    await client.ask({ op: 'again', id: 's4' }, 'reply');
    assert.equal(errors().length, 4);
    endpoints['gone-tcp'] = [0];
    endpoints['gone-udp'] = [0];
    resync();
  });
});
