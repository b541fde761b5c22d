// Node facts, local-traffic detection in every mode, and where NodePorts listen.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { localDetector, nodePortAddresses } from '../../control/model/build.ts';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { DEFAULT_MODEL_CONFIG, type ModelConfig } from '../../control/model/types.ts';
import { sourceKind, trace } from '../../control/trace/trace.ts';
import { service, slice } from '../cases/objects.ts';

const nodeObj = {
  metadata: { name: 'n0', labels: { 'topology.kubernetes.io/zone': 'z1' }, deletionTimestamp: new Date() },
  spec: { podCIDR: '10.244.0.0/24', podCIDRs: ['10.244.0.0/24', 'fd00:10:244::/64'], taints: [{ key: 'ToBeDeletedByClusterAutoscaler', effect: 'NoSchedule' }] },
  status: { addresses: [{ type: 'ExternalIP', address: '203.0.113.5' }, { type: 'InternalIP', address: '10.254.0.11' }, { type: 'InternalIP', address: 'fd00:254::b' }, { type: 'InternalIP', address: 'bogus' }] },
};

describe('node facts', () => {
  it('reads addresses (InternalIP first as primary), zone, pod CIDRs, deletion and the autoscaler taint', () => {
    const f = nodeFacts('n0', nodeObj, ['192.168.7.1']);
    assert.deepEqual(f.addresses[4], ['10.254.0.11', '203.0.113.5', '192.168.7.1']);
    assert.deepEqual(f.addresses[6], ['fd00:254::b']);
    assert.deepEqual(f.primaryIPs, { 4: '10.254.0.11', 6: 'fd00:254::b' });
    assert.equal(f.zone, 'z1');
    assert.deepEqual(f.podCIDRs, ['10.244.0.0/24', 'fd00:10:244::/64']);
    assert.equal(f.deleting, true);
    assert.equal(f.toBeDeleted, true);
    const plain = nodeFacts('n0', undefined);
    assert.deepEqual([plain.deleting, plain.toBeDeleted, plain.zone], [false, false, '']);
  });
});

describe('local traffic detection', () => {
  const node = nodeFacts('n0', nodeObj);
  const stateWith = (cfg: Partial<ModelConfig>): ReturnType<ChangeTracker['state']> => {
    const t = new ChangeTracker({ ...DEFAULT_MODEL_CONFIG, ...cfg }, node);
    t.flush();
    return t.state();
  };
  const fs = (cfg: Partial<ModelConfig>): NonNullable<ReturnType<ReturnType<ChangeTracker['state']>['families']['get']>> => stateWith(cfg).families.get(4)!;

  it('ClusterCIDR: the cluster CIDR of the family', () => {
    const f = fs({ detectLocalMode: 'ClusterCIDR', clusterCIDRs: ['10.244.0.0/16', 'fd00:10:244::/48'] });
    assert.deepEqual(f.localDetector, { mode: 'ClusterCIDR', cidrs: ['10.244.0.0/16'], interfaceName: '' });
    assert.equal(sourceKind(f, '10.244.9.9', undefined), 'local-pod');
    assert.equal(sourceKind(f, '10.254.0.200', undefined), 'other');
    assert.equal(sourceKind(f, '10.254.0.11', undefined), 'node');
  });

  it('NodeCIDR: the node\'s own pod CIDR', () => {
    const f = fs({ detectLocalMode: 'NodeCIDR' });
    assert.deepEqual(f.localDetector.cidrs, ['10.244.0.0/24']);
    assert.equal(sourceKind(f, '10.244.0.9', undefined), 'local-pod');
    assert.equal(sourceKind(f, '10.244.1.9', undefined), 'other');
  });

  it('BridgeInterface and InterfaceNamePrefix: by the arriving interface', () => {
    const b = fs({ detectLocalMode: 'BridgeInterface', bridgeInterface: 'cbr0' });
    assert.equal(sourceKind(b, '10.1.1.1', 'cbr0'), 'local-pod');
    assert.equal(sourceKind(b, '10.1.1.1', 'eth0'), 'other');
    const p = fs({ detectLocalMode: 'InterfaceNamePrefix', interfaceNamePrefix: 'veth' });
    assert.equal(sourceKind(p, '10.1.1.1', 'veth3'), 'local-pod');
    assert.equal(sourceKind(p, '10.1.1.1', 'eth0'), 'other');
  });

  it('a mode without its input falls back to None (no masquerade decision by source)', () => {
    assert.equal(fs({ detectLocalMode: 'ClusterCIDR', clusterCIDRs: [] }).localDetector.mode, 'None');
    assert.equal(fs({ detectLocalMode: 'BridgeInterface' }).localDetector.mode, 'None');
  });

  it('masqueradeAll translates every ClusterIP flow', () => {
    const t = new ChangeTracker({ ...DEFAULT_MODEL_CONFIG, masqueradeAll: true }, node);
    t.upsertService(service({ name: 'm', clusterIPs: ['10.96.9.1'], ports: [{ port: 80 }] }));
    t.upsertSlice(slice({ name: 'm-x', service: 'm', ports: [{ port: 8080 }], endpoints: [{ ip: '10.244.1.5', node: 'n1' }] }));
    t.flush();
    const v = trace(t.state(), { src: '10.244.0.5', dst: '10.96.9.1', port: 80, protocol: 'TCP' });
    assert.ok(v.verdict === 'FORWARD' && v.endpoints[0]!.sourceTranslated);
  });
});

describe('nodePortAddresses', () => {
  const node = nodeFacts('n0', nodeObj, ['192.168.7.1']);
  const cfg = (nodePortAddresses: string[]): ModelConfig => ({ ...DEFAULT_MODEL_CONFIG, nodePortAddresses });
  it('empty means every node address', () => assert.deepEqual(nodePortAddresses(cfg([]), node, 4), { all: true, addresses: ['10.254.0.11', '203.0.113.5', '192.168.7.1'], localhost: true }));
  it('"primary" means the node IP of the family', () => assert.deepEqual(nodePortAddresses(cfg(['primary']), node, 6), { all: false, addresses: ['fd00:254::b'], localhost: false }));
  it('CIDRs select addresses', () => assert.deepEqual(nodePortAddresses(cfg(['192.168.0.0/16', 'fd00::/8']), node, 4), { all: false, addresses: ['192.168.7.1'], localhost: false }));
  it('localhost NodePorts (kube-proxy): IPv4 only, with the setting on, and only where nodePortAddresses takes in 127.0.0.1', () => {
    assert.equal(nodePortAddresses(cfg([]), node, 6).localhost, false, 'never on IPv6');
    assert.equal(nodePortAddresses({ ...cfg([]), localhostNodePorts: false }, node, 4).localhost, false);
    assert.equal(nodePortAddresses(cfg(['0.0.0.0/0']), node, 4).localhost, true);
    assert.equal(nodePortAddresses(cfg(['127.0.0.0/8', '192.168.0.0/16']), node, 4).localhost, true);
    assert.equal(nodePortAddresses(cfg(['primary']), node, 4).localhost, false);
  });
  it('0.0.0.0/0 means all', () => assert.equal(nodePortAddresses(cfg(['0.0.0.0/0']), node, 4).all, true));
  it('the detector of another family is independent', () => assert.equal(localDetector({ ...DEFAULT_MODEL_CONFIG, detectLocalMode: 'NodeCIDR' }, node, 6).cidrs[0], 'fd00:10:244::/64'));
});
