// ICMP errors through the eBPF datapath, with real packets: a UDP backend whose port is closed
// answers with port unreachable; translated back (outer and quoted headers), it reaches the
// client's connected socket as ECONNREFUSED from the ClusterIP it talks to. Untranslated, the
// client's kernel finds no socket for the quote (client -> backend) and the client times out.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { compileDatapath } from '../../control/backends/ebpf/compile.ts';
import { service, slice } from '../cases/objects.ts';
import { Lab } from '../lab/lab.ts';
import { programNode, type ProgrammedNode } from './ebpf-lab.ts';

const VIP4 = '10.96.0.90';
const VIP6 = 'fd00:96::90';
const CLOSED_PORT = 9999; // no pod server listens there

describe('eBPF datapath: ICMP errors of translated flows (lab)', () => {
  let lab: Lab;
  let n0: ProgrammedNode;

  before(async () => {
    lab = await Lab.create({ nodes: 2, podsPerNode: 2 });
    n0 = programNode(lab, lab.nodes[0]!, (tracker) => {
      // One service per backend, so each test knows which path the error takes.
      for (const [name, pod, last] of [['closed-local', 'n0p1', 90], ['closed-remote', 'n1p0', 91]] as const) {
        tracker.upsertService(service({ name, clusterIPs: [`10.96.0.${last}`, `fd00:96::${last}`], ports: [{ port: 53, protocol: 'UDP', targetPort: CLOSED_PORT }] }));
        for (const family of [4, 6] as const) {
          const p = lab.pod(pod);
          tracker.upsertSlice(slice({ name: `${name}-${family}`, service: name, family, ports: [{ port: CLOSED_PORT, protocol: 'UDP' }], endpoints: [{ ip: family === 4 ? p.ipv4 : p.ipv6, node: p.node.name }] }));
        }
      }
    });
    assert.deepEqual(n0.datapath.sync(compileDatapath(n0.tracker.state())).failed, []);
  });

  after(async () => {
    n0?.datapath.close();
    await lab?.teardown();
  });

  for (const [label, v4, v6] of [['a backend on the same node', VIP4, VIP6], ['a backend on another node', '10.96.0.91', 'fd00:96::91']] as const) {
    it(`a closed UDP port on ${label}: the client's connected socket gets ECONNREFUSED through the ClusterIP, IPv4 and IPv6`, async () => {
      for (const host of [v4, v6]) {
        const [r] = await lab.probe(lab.pod('n0p0').netns, { targets: [{ proto: 'udp', host, port: 53 }], timeoutMs: 5000 });
        assert.ok(r && !r.ok, `${host}: ${JSON.stringify(r)}`);
        assert.equal(r.error, 'ECONNREFUSED', `${host}`);
      }
    });
  }
});
