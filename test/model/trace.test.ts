// The semantic case table through trace: kube-proxy's answers for every case on node n0.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { trace } from '../../control/trace/trace.ts';
import { service, slice } from '../cases/objects.ts';
import { cases, config, HOST_ONLY_IPS, node, podOf, SECONDARY_RANGE_V4, serviceCIDRs, services, slices, THIS_NODE, UNALLOCATED_IP, variants, type SemanticCase } from '../cases/semantics.ts';
import type { DesiredState, ModelConfig } from '../../control/model/types.ts';

function model(modelConfig: ModelConfig = config): ChangeTracker {
  const tracker = new ChangeTracker(modelConfig, nodeFacts(THIS_NODE, node, HOST_ONLY_IPS));
  for (const s of services) assert.deepEqual(tracker.upsertService(s), [], `service ${s.metadata?.name} is valid`);
  for (const s of slices) assert.deepEqual(tracker.upsertSlice(s), [], `slice ${s.metadata?.name} is valid`);
  for (const c of serviceCIDRs) assert.deepEqual(tracker.upsertServiceCIDR(c), [], `ServiceCIDR ${c.metadata?.name} is valid`);
  tracker.flush();
  return tracker;
}

/** trace's answer for one case (in a mode, when given) against the table's. */
function checkTrace(state: DesiredState, c: SemanticCase, mode?: 'nftables' | 'ipvs'): void {
  const v = trace(state, { src: c.src, dst: c.dst, port: c.port, protocol: c.protocol }, { mode });
  const e = (mode !== undefined ? c.inMode?.[mode] : undefined) ?? c.expect;
  assert.equal(v.verdict, e.verdict, `${mode ?? 'iptables'}: ${'reason' in v ? v.reason : ''}`);
  if (v.verdict !== 'FORWARD' || e.verdict !== 'FORWARD') return;
  assert.deepEqual(v.endpoints.map((x) => podOf(x.ip)).sort(), [...e.pods].sort(), 'candidate endpoints');
  for (const x of v.endpoints) assert.equal(x.sourceTranslated, e.hairpin?.includes(podOf(x.ip)) ? true : e.sourceTranslated, `source translation towards ${podOf(x.ip)}`);
  if (e.policy !== undefined) assert.equal(v.policy, e.policy);
}

describe('semantic case table (trace)', () => {
  const state = model().state();
  for (const variant of variants) {
    it(`configuration ${variant.name}: its cases, in every mode`, () => {
      const s = model(variant.config).state();
      for (const c of variant.cases) for (const mode of [undefined, 'nftables', 'ipvs'] as const) checkTrace(s, c, mode);
    });
  }
  for (const c of cases) {
    it(c.name, () => {
      const v = trace(state, { src: c.src, dst: c.dst, port: c.port, protocol: c.protocol });
      assert.equal(v.verdict, c.expect.verdict, 'reason' in v ? v.reason : '');
      if (v.verdict !== 'FORWARD' || c.expect.verdict !== 'FORWARD') return;
      const e = c.expect;
      assert.deepEqual(v.endpoints.map((x) => podOf(x.ip)).sort(), [...e.pods].sort(), 'candidate endpoints');
      for (const x of v.endpoints) {
        const expected = e.hairpin?.includes(podOf(x.ip)) ? true : e.sourceTranslated;
        assert.equal(x.sourceTranslated, expected, `source translation towards ${podOf(x.ip)}`);
        assert.ok(Math.abs(x.weight - 1 / v.endpoints.length) < 1e-9, 'equal weights');
        if (e.targetPort !== undefined) assert.equal(x.port, e.targetPort, 'target port');
      }
      if (e.policy !== undefined) assert.equal(v.policy, e.policy);
      if (e.kind !== undefined) assert.equal(v.frontend.kind, e.kind);
    });
  }

  it('nftables mode: a ClusterIP on a port it does not serve is rejected, other addresses pass', () => {
    for (const c of cases) {
      const v = trace(state, { src: c.src, dst: c.dst, port: c.port, protocol: c.protocol }, { mode: 'nftables' });
      assert.equal(v.verdict, (c.inMode?.nftables ?? c.expect).verdict, c.name);
    }
    const v = trace(state, { src: '10.244.0.10', dst: '10.96.0.10', port: 9999, protocol: 'TCP' }, { mode: 'nftables' });
    assert.equal(v.verdict, 'REJECT');
    assert.match(v.verdict === 'REJECT' ? v.reason : '', /does not serve/);
    assert.equal(trace(state, { src: '10.244.0.10', dst: '10.96.0.10', port: 9999, protocol: 'TCP' }).verdict, 'NO_SERVICE', 'other modes let it pass');
  });

  it('eBPF mode: the table\'s answers, unallocated ClusterIPs dropped as in nftables mode', () => {
    for (const c of cases) {
      const v = trace(state, { src: c.src, dst: c.dst, port: c.port, protocol: c.protocol }, { mode: 'ebpf' });
      assert.equal(v.verdict, (c.inMode?.ebpf ?? c.expect).verdict, c.name);
    }
  });

  it('unallocated ClusterIPs: dropped by address in nftables and eBPF mode, passed in iptables and IPVS mode, from the objects or the configuration', () => {
    const packet = { src: '10.244.0.10', dst: UNALLOCATED_IP, port: 4242, protocol: 'TCP' as const };
    for (const mode of ['nftables', 'ebpf']) {
      const v = trace(state, packet, { mode });
      assert.ok(v.verdict === 'DROP' && 'unallocated' in v, mode);
      assert.equal(v.serviceCIDR, SECONDARY_RANGE_V4);
      assert.equal(v.serviceCIDRSource, 'ServiceCIDR');
      assert.match(v.reason, /unallocated ClusterIP.*10\.97\.0\.0\/16.*ServiceCIDR objects/);
    }
    for (const mode of ['iptables', 'ipvs']) {
      const v = trace(state, packet, { mode });
      assert.equal(v.verdict, 'NO_SERVICE', mode);
      assert.match(v.reason, new RegExp(`unallocated ClusterIP in 10\\.97\\.0\\.0/16: ${mode} mode lets it pass`));
    }
    // The node's own packets: nftables mode's output chain drops them, eBPF mode looks no service up on their way out.
    assert.equal(trace(state, { ...packet, src: '10.254.0.11' }, { mode: 'nftables' }).verdict, 'DROP');
    const fromNode = trace(state, { ...packet, src: '10.254.0.11' }, { mode: 'ebpf' });
    assert.equal(fromNode.verdict, 'NO_SERVICE');
    assert.match(fromNode.reason, /eBPF mode drops it from pods and from outside, not from the node itself/);
    // Outside the ranges nothing changes, and without any ranges nothing is dropped.
    assert.equal(trace(state, { ...packet, dst: '10.98.0.1' }, { mode: 'ebpf' }).verdict, 'NO_SERVICE');
    const bare = new ChangeTracker(config, nodeFacts(THIS_NODE, node, HOST_ONLY_IPS));
    bare.flush();
    assert.equal(trace(bare.state(), packet, { mode: 'nftables' }).verdict, 'NO_SERVICE');
    // The configured range stands in while the API server has no ServiceCIDR objects; the objects win once there are some.
    const configured = new ChangeTracker({ ...config, serviceCIDRs: ['10.97.0.0/24'] }, nodeFacts(THIS_NODE, node, HOST_ONLY_IPS));
    const v = trace(configured.state(), packet, { mode: 'ebpf' });
    assert.ok(v.verdict === 'DROP' && 'unallocated' in v && v.serviceCIDRSource === 'configuration' && v.serviceCIDR === '10.97.0.0/24');
    configured.upsertServiceCIDR({ metadata: { name: 'kubernetes' }, spec: { cidrs: ['10.100.0.0/16'] } });
    assert.equal(trace(configured.state(), packet, { mode: 'ebpf' }).verdict, 'NO_SERVICE', 'the objects replace the configured range');
    configured.deleteServiceCIDR('kubernetes');
    assert.equal(trace(configured.state(), packet, { mode: 'ebpf' }).verdict, 'DROP', 'and the configured range is back once they are gone');
  });

  it('ipvs mode: kube-proxy\'s IPVS answers where they differ', () => {
    for (const c of cases) {
      const v = trace(state, { src: c.src, dst: c.dst, port: c.port, protocol: c.protocol }, { mode: 'ipvs' });
      const e = c.inMode?.ipvs ?? c.expect;
      assert.equal(v.verdict, e.verdict, c.name);
      if (v.verdict === 'FORWARD' && e.verdict === 'FORWARD') {
        assert.deepEqual(v.endpoints.map((x) => podOf(x.ip)).sort(), [...e.pods].sort(), c.name);
        for (const x of v.endpoints) assert.equal(x.sourceTranslated, e.hairpin?.includes(podOf(x.ip)) ? true : e.sourceTranslated, c.name);
      }
    }
    const lb = trace(state, { src: '10.254.0.200', dst: '10.254.0.50', port: 81, protocol: 'TCP' }, { mode: 'ipvs' });
    assert.equal(lb.verdict, 'REJECT', 'an LB IP on an unserved port');
  });

  it('ExternalName and headless services program nothing', () => {
    const keys = [...state.families.values()].flatMap((f) => [...f.servicePorts.keys()]);
    assert.deepEqual(keys.filter((k) => k.startsWith('demo/headless') || k.startsWith('demo/external-name')), []);
  });

  it('affinity, health check node port and source ranges come through', () => {
    const v4 = state.families.get(4)!.servicePorts;
    assert.equal(v4.get('demo/sticky/TCP/v4')?.affinityTimeoutSeconds, 60);
    assert.equal(v4.get('demo/web:http/TCP/v4')?.affinityTimeoutSeconds, 0);
    const lb = v4.get('demo/lb/TCP/v4')!;
    assert.equal(lb.healthCheckNodePort, 32000);
    assert.deepEqual(lb.loadBalancerSourceRanges, ['10.254.0.200/32', '10.254.0.8/29']);
    assert.equal(lb.sourceRangesAllowLbIp, true);
    assert.equal(v4.get('demo/lb-blocked/TCP/v4')?.sourceRangesAllowLbIp, false);
    assert.deepEqual(v4.get('demo/lb-blocked/TCP/v4')?.loadBalancerIPs, ['10.254.0.51']);
  });
  it('eBPF mode: SCTP frontends whose port is not the target port are left to the rule modes, and trace says so', () => {
    const t = model();
    t.upsertService(service({ name: 'sctp', type: 'NodePort', clusterIPs: ['10.96.8.1'], ports: [{ name: 's', port: 9000, protocol: 'SCTP', nodePort: 30900 }, { name: 'u', port: 9002, targetPort: 9003, protocol: 'SCTP' }] }));
    t.upsertSlice(slice({ name: 'sctp-x', service: 'sctp', ports: [{ name: 's', port: 9000, protocol: 'SCTP' }, { name: 'u', port: 9003, protocol: 'SCTP' }], endpoints: [{ ip: '10.244.1.30', node: 'n1' }] }));
    t.flush();
    const st = t.state();
    const src = '10.244.0.10';
    assert.equal(trace(st, { src, dst: '10.96.8.1', port: 9000, protocol: 'SCTP' }, { mode: 'ebpf' }).verdict, 'FORWARD', 'port = target port: served');
    const other = trace(st, { src, dst: '10.96.8.1', port: 9002, protocol: 'SCTP' }, { mode: 'ebpf' });
    assert.equal(other.verdict, 'NO_SERVICE');
    assert.match('reason' in other ? other.reason : '', /SCTP port 9002 -> target 9003: the eBPF datapath translates SCTP addresses only/);
    assert.equal(trace(st, { src, dst: '10.96.8.1', port: 9002, protocol: 'SCTP' }, { mode: 'iptables' }).verdict, 'FORWARD', 'the rule modes serve it');
    const np = trace(st, { src: '192.0.2.9', dst: node.status!.addresses![0]!.address, port: 30900, protocol: 'SCTP' }, { mode: 'ebpf' });
    assert.match('reason' in np ? np.reason : '', /SCTP NodePort 30900 -> target 9000/);
  });
});
