// The semantic case table compiled for HCN (kernelspace mode, DSR on as kube-proxy's WinDSR)
// and checked against the in-memory HCN: every document the backend sends passes the schema
// check, and for every case the load balancer VFP would pick gives trace's answer, except the
// cases listed in UNSUPPORTED, which kube-proxy's winkernel cannot serve either. Each of those
// must also be reported by the compiler for that frontend and source, so the operator sees it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hostPort } from '../../control/model/ip.ts';
import { emptyChanges } from './hns-changes.ts';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { sourceKind, trace } from '../../control/trace/trace.ts';
import { cases, config, HOST_ONLY_IPS, node, podOf, services, slices, THIS_NODE, type SemanticCase } from '../cases/semantics.ts';
import { fakeHcn, guid, hnsBackend } from './hns-fixture.ts';
import { vfpEvaluate } from './hns-vfp.ts';

/** The cases winkernel cannot serve, and why (the compiler reports each of them too). */
export const UNSUPPORTED: Readonly<Record<string, string>> = {
  'IPv6 has no UDP port: the v6 slice lists only http': 'no endpoints: HCN cannot reject, the packet goes unanswered',
  'NodePort only on nodePortAddresses: not on the pods gateway address': 'a NodePort load balancer has no VIP and serves every host address',
  'external -> NodePort, eTP Local without a local endpoint: DROP': 'no NodePort load balancer: the host stack receives the packet instead of dropping it',
  'pod -> NodePort of eTP Local service short-circuits to cluster endpoints': 'one endpoint set per load balancer: no short-circuit to the cluster endpoints for pods',
  'node -> NodePort of eTP Local service: masqueraded, cluster endpoints': 'one endpoint set per load balancer: no short-circuit for the node',
  'pod -> externalIP of eTP Local service: cluster endpoints': 'one endpoint set per load balancer: no short-circuit for pods',
  'pod -> LB IP outside the source ranges: DROP': 'loadBalancerSourceRanges are not enforced',
  'external -> LB IP outside its source ranges: DROP': 'loadBalancerSourceRanges are not enforced',
  'iTP and eTP Local: pod -> NodePort still short-circuits to the cluster endpoints': 'one endpoint set per load balancer: no short-circuit for pods',
  'iTP and eTP Local: external -> NodePort without a local endpoint: DROP': 'no NodePort load balancer: the host stack receives the packet',
  'no endpoints: REJECT (TCP)': 'no endpoints: HCN cannot send a TCP reset',
  'no endpoints: REJECT (UDP)': 'no endpoints: HCN cannot send ICMP port unreachable',
  'no endpoints: external -> externalIP: REJECT': 'no endpoints: HCN cannot send a TCP reset',
  'no endpoints: pod -> NodePort: REJECT': 'no endpoints: HCN cannot send a TCP reset',
  'no endpoints: external -> NodePort: REJECT': 'no endpoints: HCN cannot send a TCP reset',
  'no endpoints: pod -> LB IP: REJECT': 'no endpoints: HCN cannot send a TCP reset',
  'no endpoints: external -> LB IP: REJECT': 'no endpoints: HCN cannot send a TCP reset',
  'eTP Local: pod -> LB IP short-circuits to all endpoints, unmasqueraded': 'one endpoint set per load balancer: no short-circuit for pods',
  'eTP Local: node -> LB IP (the node is in its source ranges) is masqueraded, all endpoints': 'one endpoint set per load balancer: no short-circuit for the node',
  'terminating, eTP Local: external -> NodePort with only a remote terminating endpoint: DROP': 'no NodePort load balancer: the host stack receives the packet',
  'terminating, nothing serving: pod -> ClusterIP: REJECT': 'no usable endpoints: HCN cannot send a TCP reset',
  'terminating, nothing serving: external -> NodePort: REJECT': 'no usable endpoints: HCN cannot send a TCP reset',
  'external -> ClusterIP is masqueraded (not from a pod)': 'a DSR ClusterIP load balancer keeps the client address of traffic from outside',
  'iTP Local: external -> ClusterIP reaches the local endpoints, masqueraded': 'a DSR ClusterIP load balancer keeps the client address of traffic from outside',
};

/** Of those, the ones that work without winkernel.enableDSR (the ClusterIP load balancer then source-NATs). */
export const UNSUPPORTED_ONLY_WITH_DSR: readonly string[] = ['external -> ClusterIP is masqueraded (not from a pod)', 'iTP Local: external -> ClusterIP reaches the local endpoints, masqueraded'];

/** Without winkernel.enableDSR, VFP source-NATs external traffic: these eTP Local cases lose the client address too. */
export const UNSUPPORTED_WITHOUT_DSR: Readonly<Record<string, string>> = {
  'external -> LB IP in source ranges, eTP Local: local endpoint, client IP kept': 'the client address is kept only by a DSR load balancer',
  'LB IP as source is allowed when a node IP is in the ranges': 'the client address is kept only by a DSR load balancer',
  'external -> NodePort, eTP Local: terminating local endpoint still serves': 'the client address is kept only by a DSR load balancer',
  'eTP Local: external -> externalIP reaches only the local endpoint, client IP kept': 'the client address is kept only by a DSR load balancer',
  'eTP Local: external -> NodePort reaches only the local endpoint, client IP kept': 'the client address is kept only by a DSR load balancer',
  'terminating, eTP Local: external -> NodePort reaches the ready local endpoint only': 'the client address is kept only by a DSR load balancer',
};

async function setUp(enableDSR = true) {
  const tracker = new ChangeTracker(config, nodeFacts(THIS_NODE, node, HOST_ONLY_IPS));
  for (const s of services) tracker.upsertService(s);
  for (const s of slices) tracker.upsertSlice(s);
  tracker.flush();
  const state = tracker.state();
  // Local endpoints of n0's pods, as the CNI made them (both families on one endpoint).
  const pods = [0, 1, 2].map((p) => ({ id: guid(0x100 + p), ips: [`10.244.0.${10 + p}`, `fd00:10:244::${(10 + p).toString(16)}`] }));
  const hcn = fakeHcn(pods);
  const backend = hnsBackend(hcn, { enableDSR });
  const result = await backend.sync(state, emptyChanges(), true);
  return { state, hcn, backend, result };
}

/** Why the HCN answer differs from trace's, or undefined when they agree. */
function disagreement(c: SemanticCase, state: ReturnType<ChangeTracker['state']>, hcn: Awaited<ReturnType<typeof setUp>>['hcn']): string | undefined {
  const fs = state.families.get(c.dst.includes(':') ? 6 : 4)!;
  const source = sourceKind(fs, c.src, undefined);
  const t = trace(state, { src: c.src, dst: c.dst, port: c.port, protocol: c.protocol });
  assert.equal(t.verdict, c.expect.verdict, `${c.name}: trace agrees with the table`);
  const host = new Set([...fs.nodeIPs, ...HOST_ONLY_IPS]);
  const v = vfpEvaluate(hcn, host, c, source);
  if (t.verdict === 'FORWARD') {
    if (v.verdict !== 'LOAD_BALANCED') return 'no load balancer';
    const want = t.endpoints.map((e) => `${podOf(e.ip)}:${e.port}`).sort().join(' ');
    const got = v.endpoints.map((e) => `${podOf(e.ip)}:${e.port}`).sort().join(' ');
    if (want !== got) return `endpoints ${got}, trace ${want}`;
    if (source === 'node') return undefined; // the node's own address either way
    for (const e of t.endpoints) {
      const g = v.endpoints.find((x) => x.ip === e.ip)!;
      if (g.sourceTranslated !== e.sourceTranslated) return `${podOf(e.ip)} sees ${g.sourceTranslated ? 'the SourceVIP' : 'the client'}, trace says ${e.sourceTranslated ? 'a node address' : 'the client'}`;
    }
    return undefined;
  }
  if (t.verdict === 'REJECT') return v.verdict === 'UNTOUCHED' ? 'nothing answers (no reset, no ICMP)' : 'load balanced';
  if (v.verdict !== 'UNTOUCHED') return `load balanced to ${v.endpoints.map((e) => podOf(e.ip)).join(', ')}`;
  if (t.verdict === 'DROP' && host.has(c.dst)) return 'reaches the host stack (not dropped)';
  return undefined;
}

describe('HNS backend against the semantic case table', () => {
  it('every document passes the HCN schema; the load balancers give trace\'s answer except where winkernel cannot', async () => {
    const { state, hcn, result } = await setUp();
    assert.deepEqual(result.failed, [], 'the in-memory HCN accepted every call');
    assert.equal(hcn.openHandles(), 0, 'every handle closed');
    const differing = new Map<string, string>();
    for (const c of cases) {
      const why = disagreement(c, state, hcn);
      if (why !== undefined) differing.set(c.name, why);
    }
    const unexpected = [...differing].filter(([name]) => !(name in UNSUPPORTED));
    assert.deepEqual(unexpected, [], 'cases that should work on HCN');
    const nowWorking = Object.keys(UNSUPPORTED).filter((name) => !differing.has(name));
    assert.deepEqual(nowWorking, [], 'cases listed as unsupported that agree with trace (take them off the list)');
    // The operator hears of each unsupported case: the compiler names its frontend and source.
    for (const name of Object.keys(UNSUPPORTED)) {
      const c = cases.find((x) => x.name === name)!;
      const fs = state.families.get(c.dst.includes(':') ? 6 : 4)!;
      const source = sourceKind(fs, c.src, undefined);
      const where = [`${hostPort(c.dst, c.port)} `, `*:${c.port} NodePort`];
      const reported = result.unsupported.some((u) => where.some((w) => u.reason.startsWith(w)) && u.reason.includes(source));
      assert.ok(reported, `${name}: reported as unsupported (${source}); got ${JSON.stringify(result.unsupported.filter((u) => where.some((w) => u.reason.startsWith(w))))}`);
    }
  });

  it('without enableDSR, eTP Local frontends keep their local endpoints but not the client address, and say so', async () => {
    const { state, hcn, result } = await setUp(false);
    assert.deepEqual(result.failed, []);
    const expected: Record<string, string> = { ...UNSUPPORTED, ...UNSUPPORTED_WITHOUT_DSR };
    for (const name of UNSUPPORTED_ONLY_WITH_DSR) delete expected[name];
    const differing = cases.filter((c) => disagreement(c, state, hcn) !== undefined).map((c) => c.name);
    assert.deepEqual(differing.sort(), Object.keys(expected).sort());
    for (const name of Object.keys(UNSUPPORTED_WITHOUT_DSR)) {
      const c = cases.find((x) => x.name === name)!;
      assert.match(disagreement(c, state, hcn)!, /sees the SourceVIP/, name);
      assert.ok(result.unsupported.some((u) => u.reason.startsWith(`${hostPort(c.dst, c.port)} `) || u.reason.startsWith(`*:${c.port} NodePort`) ? /enableDSR/.test(u.reason) : false), `${name}: reported with the enableDSR reason`);
    }
  });

  it('serves the rest of the table: the supported cases are most of it', async () => {
    const { state, hcn } = await setUp();
    const supported = cases.filter((c) => !(c.name in UNSUPPORTED));
    assert.ok(supported.length >= 20, `${supported.length} supported cases`);
    for (const c of supported) assert.equal(disagreement(c, state, hcn), undefined, c.name);
  });
});
