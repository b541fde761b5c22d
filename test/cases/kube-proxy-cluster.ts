// A small cluster in the shapes kube-proxy's own proxier tests use (a ClusterIP, a NodePort with
// eTP Local, an LB with source ranges, ClientIP affinity, a service without endpoints), so the
// golden outputs can be read side by side with kube-proxy's expectations.
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { DEFAULT_MODEL_CONFIG, type ModelConfig } from '../../control/model/types.ts';
import { service, slice } from './objects.ts';

export function kubeProxyTestCluster(config: Partial<ModelConfig> = {}): ChangeTracker {
  const t = new ChangeTracker(
    { ...DEFAULT_MODEL_CONFIG, families: [4], clusterCIDRs: ['10.0.0.0/8'], detectLocalMode: 'ClusterCIDR', ...config },
    nodeFacts('test-node', { metadata: { name: 'test-node' }, status: { addresses: [{ type: 'InternalIP', address: '192.168.0.2' }] } }),
  );
  t.upsertService(service({ ns: 'ns1', name: 'svc1', clusterIPs: ['172.30.0.41'], ports: [{ name: 'p80', port: 80 }] }));
  t.upsertSlice(slice({ ns: 'ns1', name: 'svc1-x', service: 'svc1', ports: [{ name: 'p80', port: 80 }], endpoints: [{ ip: '10.180.0.1', node: 'other' }] }));
  t.upsertService(service({ ns: 'ns2', name: 'svc2', type: 'NodePort', clusterIPs: ['172.30.0.42'], ports: [{ name: 'p80', port: 80, nodePort: 3001 }], eTP: 'Local' }));
  t.upsertSlice(slice({ ns: 'ns2', name: 'svc2-x', service: 'svc2', ports: [{ name: 'p80', port: 80 }], endpoints: [{ ip: '10.180.0.2', node: 'test-node' }, { ip: '10.180.0.3', node: 'other' }] }));
  t.upsertService(service({ ns: 'ns5', name: 'svc5', type: 'LoadBalancer', clusterIPs: ['172.30.0.45'], ports: [{ name: 'p80', port: 80, nodePort: 3002 }], lbIPs: ['1.2.3.4'], sourceRanges: ['203.0.113.0/25'], eTP: 'Cluster' }));
  t.upsertSlice(slice({ ns: 'ns5', name: 'svc5-x', service: 'svc5', ports: [{ name: 'p80', port: 80 }], endpoints: [{ ip: '10.180.0.4', node: 'other' }, { ip: '10.180.0.5', node: 'other' }, { ip: '10.180.0.6', node: 'other' }] }));
  t.upsertService(service({ ns: 'ns6', name: 'sticky', clusterIPs: ['172.30.0.46'], ports: [{ name: 'p80', port: 80 }], affinity: 10800 }));
  t.upsertSlice(slice({ ns: 'ns6', name: 'sticky-x', service: 'sticky', ports: [{ name: 'p80', port: 80 }], endpoints: [{ ip: '10.180.0.7', node: 'other' }, { ip: '10.180.0.8', node: 'other' }] }));
  t.upsertService(service({ ns: 'ns7', name: 'empty', clusterIPs: ['172.30.0.47'], ports: [{ name: 'p80', port: 80 }] }));
  t.flush();
  return t;
}
