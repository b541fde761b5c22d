// The takeover's pure parts: kernel conntrack's listing parsed, and the entries written for the
// flows another proxy translated (both directions, SY_CT_HOST, the SNAT source the kernel chose).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CT, IPPROTO, SCOPE } from '../../control/bpf/layout.ts';
import { parseConntrack, planSeed, type TakeoverFrontend } from '../../control/backends/ebpf/takeover.ts';
import { partnerKey } from '../../control/backends/ebpf/conntrack.ts';

const LISTING = [
  // A pod to a ClusterIP, DNATed to a pod on another node.
  'ipv4     2 tcp      6 86395 ESTABLISHED src=10.244.0.10 dst=10.96.0.60 sport=40000 dport=9100 src=10.244.1.11 dst=10.244.0.10 sport=9100 dport=40000 [ASSURED] mark=0 use=1',
  // The external client to a NodePort, masqueraded to the node with another source port.
  'ipv4     2 tcp      6 431999 FIN_WAIT src=10.254.0.200 dst=10.254.0.11 sport=50000 dport=30190 src=10.244.1.11 dst=10.254.0.11 sport=9100 dport=50001 [ASSURED] mark=0 use=1',
  'ipv4     2 udp      17 119 src=10.244.0.10 dst=10.96.0.60 sport=41000 dport=9100 src=10.244.0.11 dst=10.244.0.10 sport=9100 dport=41000 [ASSURED] mark=0 use=1',
  'ipv4     2 udp      17 29 src=10.244.0.10 dst=10.96.0.60 sport=41001 dport=9100 [UNREPLIED] src=10.244.0.11 dst=10.244.0.10 sport=9100 dport=41001 mark=0 use=1',
  // Over: a new SYN on the tuple opens a new flow.
  'ipv4     2 tcp      6 100 TIME_WAIT src=10.244.0.10 dst=10.96.0.60 sport=40001 dport=9100 src=10.244.1.11 dst=10.244.0.10 sport=9100 dport=40001 [ASSURED] mark=0 use=1',
  // Not to a frontend; to a frontend but not translated; translated to an address that is no backend.
  'ipv4     2 tcp      6 86395 ESTABLISHED src=10.244.0.10 dst=10.244.0.11 sport=40002 dport=9100 src=10.244.0.11 dst=10.244.0.10 sport=9100 dport=40002 [ASSURED] mark=0 use=1',
  'ipv4     2 tcp      6 86395 ESTABLISHED src=10.244.0.10 dst=10.96.0.60 sport=40003 dport=9100 src=10.96.0.60 dst=10.244.0.10 sport=9100 dport=40003 [ASSURED] mark=0 use=1',
  'ipv4     2 tcp      6 86395 ESTABLISHED src=10.244.0.10 dst=10.96.0.60 sport=40004 dport=9100 src=10.244.3.3 dst=10.244.0.10 sport=9100 dport=40004 [ASSURED] mark=0 use=1',
  'ipv6     10 tcp      6 86395 ESTABLISHED src=fd00:10:244:0:0:0:0:a dst=fd00:96::60 sport=40005 dport=9100 src=fd00:10:244:1::b dst=fd00:10:244::a sport=9100 dport=40005 [ASSURED] mark=0 use=1',
  'ipv4     2 icmp     1 29 src=10.244.0.10 dst=10.96.0.60 type=8 code=0 id=1 src=10.96.0.60 dst=10.244.0.10 type=0 code=0 id=1 mark=0 use=1',
  'conntrack v1.4.7 (conntrack-tools): 10 flow entries have been shown.',
].join('\n');

const be = [
  { id: 3, addr: '10.244.0.11', port: 9100 },
  { id: 4, addr: '10.244.1.11', port: 9100 },
];
const FRONTENDS: TakeoverFrontend[] = [
  { key: { addr: '10.96.0.60', port: 9100, proto: IPPROTO.TCP, family: 4, scope: SCOPE.INTERNAL }, revNatId: 7, serviceId: 2, backends: be },
  { key: { addr: '10.96.0.60', port: 9100, proto: IPPROTO.UDP, family: 4, scope: SCOPE.INTERNAL }, revNatId: 8, serviceId: 5, backends: be },
  { key: { addr: '10.254.0.11', port: 30190, proto: IPPROTO.TCP, family: 4, scope: SCOPE.EXTERNAL }, revNatId: 9, serviceId: 2, backends: be },
  { key: { addr: 'fd00:96::60', port: 9100, proto: IPPROTO.TCP, family: 6, scope: SCOPE.INTERNAL }, revNatId: 10, serviceId: 6, backends: [{ id: 11, addr: 'fd00:10:244:1::b', port: 9100 }] },
];

describe('takeover from kernel conntrack', () => {
  it('parses conntrack -o extended: both tuples, state, unreplied; TCP and UDP only', () => {
    const flows = parseConntrack(LISTING);
    assert.equal(flows.length, 9);
    assert.deepEqual(flows[0], {
      family: 4, proto: IPPROTO.TCP, state: 'ESTABLISHED', unreplied: false,
      orig: { src: '10.244.0.10', dst: '10.96.0.60', sport: 40000, dport: 9100 },
      reply: { src: '10.244.1.11', dst: '10.244.0.10', sport: 9100, dport: 40000 },
    });
    assert.equal(flows[2]!.state, undefined);
    assert.equal(flows[3]!.unreplied, true);
    assert.equal(flows[8]!.orig.src, 'fd00:10:244::a', 'IPv6 in one spelling');
  });

  it('writes both directions of each translated flow to an open frontend, marked HOST', () => {
    const seed = planSeed(parseConntrack(LISTING), FRONTENDS, 1000n);
    // The ClusterIP TCP flow, the NodePort flow, two UDP flows and the IPv6 one; nothing else.
    assert.equal(seed.length, 10);
    const [fwd, rev] = seed;
    assert.deepEqual(fwd, {
      table: 'sy_ct',
      key: { saddr: '10.244.0.10', daddr: '10.96.0.60', sport: 40000, dport: 9100, proto: IPPROTO.TCP, family: 4 },
      value: { natAddr: '0.0.0.0', natPort: 0, flags: CT.HOST | CT.ESTABLISHED, backendId: 4, revNatId: 7, serviceId: 2, created: 1000n, lastSeen: 1000n },
    });
    assert.deepEqual(rev!.key, { saddr: '10.244.1.11', daddr: '10.244.0.10', sport: 9100, dport: 40000, proto: IPPROTO.TCP, family: 4 });
    assert.equal(rev!.value.flags, CT.HOST | CT.ESTABLISHED | CT.REPLY);
    // The masqueraded NodePort flow: the SNAT source the kernel chose, half closed.
    const np = seed.filter((e) => e.value.revNatId === 9);
    assert.equal(np.length, 2);
    assert.deepEqual([np[0]!.value.natAddr, np[0]!.value.natPort], ['10.254.0.11', 50001]);
    assert.equal(np[0]!.value.flags, CT.HOST | CT.ESTABLISHED | CT.CLOSING | CT.SNAT);
    assert.deepEqual(np[1]!.key, { saddr: '10.244.1.11', daddr: '10.254.0.11', sport: 9100, dport: 50001, proto: IPPROTO.TCP, family: 4 });
    assert.deepEqual([np[1]!.value.natAddr, np[1]!.value.natPort], ['10.254.0.200', 50000]);
    // UDP: in sy_ct_any; answered flows are streams, unanswered ones not.
    const udp = seed.filter((e) => e.table === 'sy_ct_any');
    assert.equal(udp.length, 4);
    assert.equal(udp[0]!.value.flags & CT.ESTABLISHED, CT.ESTABLISHED);
    assert.equal(udp[2]!.value.flags & CT.ESTABLISHED, 0);
    // Each entry names its partner as the datapath derives it (sy_ct_partner): the two live and die together.
    const ids = {
      backend: (id: number) => [...be, ...FRONTENDS[3]!.backends].find((b) => b.id === id),
      frontend: (id: number) => FRONTENDS.map((f) => ({ ...f.key, id: f.revNatId })).find((f) => f.id === id),
    };
    for (let i = 0; i < seed.length; i += 2) {
      assert.deepEqual(partnerKey(seed[i]!.key, seed[i]!.value, ids), seed[i + 1]!.key);
      assert.deepEqual(partnerKey(seed[i + 1]!.key, seed[i + 1]!.value, ids), seed[i]!.key);
    }
  });
});
