// The semantic case table: one small cluster laid out on the lab's addresses, and packets with
// the verdict kube-proxy's semantics give them on node n0. trace must give these answers, and
// every datapath (eBPF, iptables, nftables, IPVS) must behave as trace says.
//
// Lab addresses: node n<i> 10.254.0.(11+i) / fd00:254::(11+i); pod n<i>p<j> 10.244.i.(10+j) /
// fd00:10:244:i::(10+j); external client 10.254.0.200. Pod servers listen on 8080 and 8081.
import type { V1EndpointSlice, V1Node, V1Service, V1ServiceCIDR } from '@kubernetes/client-node';
import type { ModelConfig } from '../../control/model/types.ts';
import { DEFAULT_MODEL_CONFIG } from '../../control/model/types.ts';
import { service, slice, type EndpointSpec } from './objects.ts';

const v4 = (node: number, pod: number): string => `10.244.${node}.${10 + pod}`;
const v6 = (node: number, pod: number): string => (node === 0 ? `fd00:10:244::${(10 + pod).toString(16)}` : `fd00:10:244:${node}::${(10 + pod).toString(16)}`);
const ep = (node: number, pod: number, extra: Partial<EndpointSpec> = {}): EndpointSpec => ({
  ip: v4(node, pod),
  node: `n${node}`,
  zone: node === 0 ? 'zone-a' : 'zone-b',
  ...extra,
});
const ep6 = (node: number, pod: number): EndpointSpec => ({ ...ep(node, pod), ip: v6(node, pod) });

/** The pod whose address an endpoint IP is, e.g. "n0p1". */
export function podOf(ip: string): string {
  const m4 = /^10\.244\.(\d+)\.(\d+)$/.exec(ip);
  if (m4) return `n${m4[1]}p${Number(m4[2]) - 10}`;
  const m6 = /^fd00:10:244:(?:(\d+))?:?:([0-9a-f]+)$/.exec(ip);
  if (m6) return `n${m6[1] ?? 0}p${parseInt(m6[2]!, 16) - 10}`;
  return ip;
}

export const THIS_NODE = 'n0';
export const NODE_IPS = ['10.254.0.11', 'fd00:254::b'];
/** Addresses the host has besides its node IPs (the pods' gateway): NodePorts must not answer there. */
export const HOST_ONLY_IPS = ['10.244.0.1'];
export const EXTERNAL_CLIENT = '10.254.0.200';
export const LB_IP = '10.254.0.50';
export const LB_BLOCKED_IP = '10.254.0.51';
export const EXTERNAL_IP = '10.254.0.100';

export const config: ModelConfig = {
  ...DEFAULT_MODEL_CONFIG,
  families: [4, 6],
  clusterCIDRs: ['10.244.0.0/16', 'fd00:10:244::/48'],
  detectLocalMode: 'ClusterCIDR',
  nodePortAddresses: ['10.254.0.0/24', 'fd00:254::/64'],
};

export const node: V1Node = {
  metadata: { name: THIS_NODE, labels: { 'topology.kubernetes.io/zone': 'zone-a' } },
  spec: { podCIDRs: ['10.244.0.0/24', 'fd00:10:244::/64'] },
  status: {
    addresses: [
      { type: 'InternalIP', address: '10.254.0.11' },
      { type: 'InternalIP', address: 'fd00:254::b' },
      { type: 'Hostname', address: 'n0' },
    ],
  },
};

export const services: V1Service[] = [
  service({
    name: 'web',
    clusterIPs: ['10.96.0.10', 'fd00:96::10'],
    ports: [
      { name: 'http', port: 80, targetPort: 'http' },
      { name: 'dns', port: 53, protocol: 'UDP', targetPort: 8080 },
    ],
  }),
  service({
    name: 'multi',
    clusterIPs: ['10.96.0.11'],
    ports: [
      { name: 'a', port: 81, protocol: 'TCP', targetPort: 'alpha' },
      { name: 'b', port: 81, protocol: 'UDP', targetPort: 'alpha' },
      { name: 'c', port: 82, protocol: 'TCP', targetPort: 'gamma' },
    ],
  }),
  service({ name: 'sticky', clusterIPs: ['10.96.0.12'], ports: [{ port: 80, targetPort: 8080 }], affinity: 60 }),
  service({ name: 'np', type: 'NodePort', clusterIPs: ['10.96.0.13'], ports: [{ port: 80, nodePort: 30080 }] }),
  service({
    name: 'np-local',
    type: 'NodePort',
    clusterIPs: ['10.96.0.14'],
    ports: [{ port: 80, nodePort: 30081 }],
    externalIPs: [EXTERNAL_IP],
    eTP: 'Local',
  }),
  service({
    name: 'lb',
    type: 'LoadBalancer',
    clusterIPs: ['10.96.0.20'],
    ports: [{ port: 80, nodePort: 30082 }],
    lbIPs: [LB_IP],
    sourceRanges: [' 10.254.0.200/32 ', '10.254.0.8/29'],
    eTP: 'Local',
    healthCheckNodePort: 32000,
  }),
  service({
    name: 'lb-blocked',
    type: 'LoadBalancer',
    clusterIPs: ['10.96.0.21'],
    ports: [{ port: 80, nodePort: 30083 }],
    lbIPs: [LB_BLOCKED_IP, { ip: '10.254.0.52', ipMode: 'Proxy' }],
    sourceRanges: ['192.0.2.0/24'],
  }),
  service({ name: 'term', type: 'NodePort', clusterIPs: ['10.96.0.22'], ports: [{ port: 80, nodePort: 30084 }], eTP: 'Local' }),
  service({ name: 'itp-local', clusterIPs: ['10.96.0.30'], ports: [{ port: 80 }], iTP: 'Local' }),
  service({ name: 'both-local', type: 'NodePort', clusterIPs: ['10.96.0.32'], ports: [{ port: 80, nodePort: 30085 }], iTP: 'Local', eTP: 'Local' }),
  service({ name: 'itp-local-none', clusterIPs: ['10.96.0.31'], ports: [{ port: 80 }], iTP: 'Local' }),
  service({
    name: 'empty',
    clusterIPs: ['10.96.0.40'],
    ports: [
      { name: 'http', port: 80 },
      { name: 'u', port: 53, protocol: 'UDP' },
    ],
  }),
  service({ name: 'topo', clusterIPs: ['10.96.0.50'], ports: [{ port: 80 }] }),
  service({ name: 'topo-partial', clusterIPs: ['10.96.0.51'], ports: [{ port: 80 }] }),
  service({ name: 'topo-node', clusterIPs: ['10.96.0.52'], ports: [{ port: 80 }] }),
  service({ name: 'headless', clusterIPs: ['None'], ports: [{ port: 80 }] }),
  { ...service({ name: 'external-name', ports: [{ port: 80 }] }), spec: { type: 'ExternalName', externalName: 'example.invalid', ports: [{ port: 80 }] } },
];

export const slices: V1EndpointSlice[] = [
  slice({
    name: 'web-v4',
    service: 'web',
    ports: [
      { name: 'http', port: 8080 },
      { name: 'dns', port: 8080, protocol: 'UDP' },
    ],
    endpoints: [ep(0, 1), ep(1, 1)],
  }),
  slice({ name: 'web-v6', service: 'web', family: 6, ports: [{ name: 'http', port: 8080 }], endpoints: [ep6(0, 1), ep6(1, 1)] }),
  slice({
    name: 'multi-x',
    service: 'multi',
    ports: [
      { name: 'a', port: 8080 },
      { name: 'b', port: 8080, protocol: 'UDP' },
      { name: 'c', port: 8081 },
    ],
    endpoints: [ep(1, 0)],
  }),
  slice({ name: 'sticky-x', service: 'sticky', ports: [{ port: 8080 }], endpoints: [ep(0, 1), ep(0, 2), ep(1, 1), ep(1, 2)] }),
  slice({ name: 'np-x', service: 'np', ports: [{ port: 8080 }], endpoints: [ep(0, 2), ep(1, 0)] }),
  slice({ name: 'np-local-x', service: 'np-local', ports: [{ port: 8080 }], endpoints: [ep(1, 2)] }),
  slice({ name: 'lb-x', service: 'lb', ports: [{ port: 8080 }], endpoints: [ep(0, 0), ep(1, 0)] }),
  slice({ name: 'lb-blocked-x', service: 'lb-blocked', ports: [{ port: 8080 }], endpoints: [ep(1, 1)] }),
  slice({
    name: 'term-x',
    service: 'term',
    ports: [{ port: 8080 }],
    endpoints: [ep(0, 1, { ready: false, serving: true, terminating: true }), ep(1, 1)],
  }),
  slice({ name: 'itp-local-x', service: 'itp-local', ports: [{ port: 8080 }], endpoints: [ep(0, 2), ep(1, 2)] }),
  slice({ name: 'itp-local-none-x', service: 'itp-local-none', ports: [{ port: 8080 }], endpoints: [ep(1, 2)] }),
  slice({ name: 'both-local-x', service: 'both-local', ports: [{ port: 8080 }], endpoints: [ep(1, 0)] }),
  slice({ name: 'empty-x', service: 'empty', ports: [{ name: 'http', port: 8080 }], endpoints: [] }),
  slice({ name: 'topo-x', service: 'topo', ports: [{ port: 8080 }], endpoints: [ep(0, 0, { zoneHints: ['zone-a'] }), ep(1, 0, { zoneHints: ['zone-b'] })] }),
  slice({ name: 'topo-partial-x', service: 'topo-partial', ports: [{ port: 8080 }], endpoints: [ep(0, 0, { zoneHints: ['zone-a'] }), ep(1, 0)] }),
  slice({
    name: 'topo-node-x',
    service: 'topo-node',
    ports: [{ port: 8080 }],
    endpoints: [ep(0, 0, { nodeHints: ['n0'], zoneHints: ['zone-a'] }), ep(0, 1, { nodeHints: ['n0'], zoneHints: ['zone-a'] }), ep(1, 0, { nodeHints: ['n1'], zoneHints: ['zone-a'] })],
  }),
];

/**
 * The cluster's ServiceCIDR objects: a secondary range only (the services above are outside it,
 * so their cases keep their answers), with one service of its own.
 */
export const SECONDARY_RANGE_V4 = '10.97.0.0/16';
export const SECONDARY_RANGE_V6 = 'fd00:97::/112';
export const UNALLOCATED_IP = '10.97.0.99';
export const UNALLOCATED_IP6 = 'fd00:97::99';
export const serviceCIDRs: V1ServiceCIDR[] = [{ apiVersion: 'networking.k8s.io/v1', kind: 'ServiceCIDR', metadata: { name: 'secondary' }, spec: { cidrs: [SECONDARY_RANGE_V4, SECONDARY_RANGE_V6] } }];
services.push(service({ name: 'in-range', clusterIPs: ['10.97.0.10'], ports: [{ port: 80, targetPort: 8080 }] }));
slices.push(slice({ name: 'in-range-x', service: 'in-range', ports: [{ port: 8080 }], endpoints: [ep(1, 0)] }));

/** Where a case's packet starts in the lab. */
export type Origin = { pod: string } | { node: string } | { external: true };

export interface SemanticCase {
  name: string;
  from: Origin;
  src: string;
  dst: string;
  port: number;
  protocol: 'TCP' | 'UDP';
  expect:
    | {
        verdict: 'FORWARD';
        /** The candidate endpoints, by pod. */
        pods: string[];
        /** Whether the backend sees a translated source... */
        sourceTranslated: boolean;
        /** ...except for these pods, reached through hairpin, which always see it translated. */
        hairpin?: string[];
        policy?: 'Cluster' | 'Local';
        kind?: string;
        targetPort?: number;
      }
    | { verdict: 'DROP' | 'REJECT' | 'NO_SERVICE' };
  /**
   * Where a proxy mode answers otherwise than `expect` (iptables mode's answer): kube-proxy's
   * nftables mode rejects unserved ClusterIP ports; nftables and eBPF mode drop unallocated ClusterIPs.
   */
  inMode?: Partial<Record<'nftables' | 'ipvs' | 'ebpf', SemanticCase['expect']>>;
}

const fromPod = (node: number, pod: number): { from: Origin; src: string } => ({ from: { pod: `n${node}p${pod}` }, src: v4(node, pod) });
const fromNode = { from: { node: 'n0' }, src: '10.254.0.11' } as const;
const fromExternal = { from: { external: true }, src: EXTERNAL_CLIENT } as const;

export const cases: SemanticCase[] = [
  { name: 'pod -> ClusterIP, backends on both nodes, no SNAT', ...fromPod(0, 0), dst: '10.96.0.10', port: 80, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n0p1', 'n1p1'], sourceTranslated: false, kind: 'ClusterIP', targetPort: 8080 } },
  { name: 'pod -> ClusterIP over UDP (named port dns)', ...fromPod(0, 0), dst: '10.96.0.10', port: 53, protocol: 'UDP', expect: { verdict: 'FORWARD', pods: ['n0p1', 'n1p1'], sourceTranslated: false } },
  { name: 'pod -> ClusterIP, IPv6 (dual stack)', from: { pod: 'n0p0' }, src: v6(0, 0), dst: 'fd00:96::10', port: 80, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n0p1', 'n1p1'], sourceTranslated: false } },
  { name: 'IPv6 has no UDP port: the v6 slice lists only http', from: { pod: 'n0p0' }, src: v6(0, 0), dst: 'fd00:96::10', port: 53, protocol: 'UDP', expect: { verdict: 'REJECT' } },
  { name: 'node -> ClusterIP is masqueraded (detect-local ClusterCIDR)', ...fromNode, dst: '10.96.0.10', port: 80, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n0p1', 'n1p1'], sourceTranslated: true } },
  { name: 'hairpin: a pod reaching itself through its service is masqueraded', ...fromPod(0, 1), dst: '10.96.0.10', port: 80, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n0p1', 'n1p1'], sourceTranslated: false, hairpin: ['n0p1'] } },
  { name: 'multi-port: TCP 81 -> port a (8080)', ...fromPod(0, 0), dst: '10.96.0.11', port: 81, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n1p0'], sourceTranslated: false, targetPort: 8080 } },
  { name: 'multi-protocol: UDP 81 -> port b (8080/UDP)', ...fromPod(0, 0), dst: '10.96.0.11', port: 81, protocol: 'UDP', expect: { verdict: 'FORWARD', pods: ['n1p0'], sourceTranslated: false, targetPort: 8080 } },
  { name: 'multi-port: TCP 82 -> port c (named target 8081)', ...fromPod(0, 0), dst: '10.96.0.11', port: 82, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n1p0'], sourceTranslated: false, targetPort: 8081 } },
  { name: 'no service port for UDP 82', ...fromPod(0, 0), dst: '10.96.0.11', port: 82, protocol: 'UDP', expect: { verdict: 'NO_SERVICE' }, inMode: { nftables: { verdict: 'REJECT' }, ipvs: { verdict: 'REJECT' } } },
  { name: 'ClientIP affinity service forwards over all endpoints', ...fromPod(0, 0), dst: '10.96.0.12', port: 80, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n0p1', 'n0p2', 'n1p1', 'n1p2'], sourceTranslated: false } },
  { name: 'external -> NodePort, eTP Cluster: SNAT, all endpoints', ...fromExternal, dst: '10.254.0.11', port: 30080, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n0p2', 'n1p0'], sourceTranslated: true, kind: 'NodePort' } },
  { name: 'NodePort only on nodePortAddresses: not on the pods gateway address', ...fromPod(0, 0), dst: '10.244.0.1', port: 30080, protocol: 'TCP', expect: { verdict: 'NO_SERVICE' } },
  { name: 'external -> NodePort, eTP Local without a local endpoint: DROP', ...fromExternal, dst: '10.254.0.11', port: 30081, protocol: 'TCP', expect: { verdict: 'DROP' } },
  { name: 'external -> externalIP, eTP Local without a local endpoint: DROP', ...fromExternal, dst: EXTERNAL_IP, port: 80, protocol: 'TCP', expect: { verdict: 'DROP' } },
  { name: 'pod -> NodePort of eTP Local service short-circuits to cluster endpoints', ...fromPod(0, 0), dst: '10.254.0.11', port: 30081, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n1p2'], sourceTranslated: false, policy: 'Cluster' } },
  { name: 'node -> NodePort of eTP Local service: masqueraded, cluster endpoints', ...fromNode, dst: '10.254.0.11', port: 30081, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n1p2'], sourceTranslated: true, policy: 'Cluster' }, inMode: { ipvs: { verdict: 'FORWARD', pods: ['n1p2'], sourceTranslated: false, policy: 'Cluster' } } },
  { name: 'pod -> externalIP of eTP Local service: cluster endpoints', ...fromPod(0, 0), dst: EXTERNAL_IP, port: 80, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n1p2'], sourceTranslated: false, kind: 'ExternalIP' } },
  { name: 'external -> LB IP in source ranges, eTP Local: local endpoint, client IP kept', ...fromExternal, dst: LB_IP, port: 80, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n0p0'], sourceTranslated: false, policy: 'Local', kind: 'LoadBalancer' } },
  { name: 'LB IP as source is allowed when a node IP is in the ranges', from: { node: 'n0' }, src: LB_IP, dst: LB_IP, port: 80, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n0p0'], sourceTranslated: false, policy: 'Local' } },
  { name: 'pod -> LB IP outside the source ranges: DROP', ...fromPod(0, 2), dst: LB_IP, port: 80, protocol: 'TCP', expect: { verdict: 'DROP' } },
  { name: 'external -> LB IP outside its source ranges: DROP', ...fromExternal, dst: LB_BLOCKED_IP, port: 80, protocol: 'TCP', expect: { verdict: 'DROP' } },
  { name: 'external -> NodePort of the same service is not filtered by source ranges', ...fromExternal, dst: '10.254.0.11', port: 30083, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n1p1'], sourceTranslated: true } },
  { name: 'LB ingress with ipMode Proxy gets no frontend', ...fromExternal, dst: '10.254.0.52', port: 80, protocol: 'TCP', expect: { verdict: 'NO_SERVICE' } },
  { name: 'external -> NodePort, eTP Local: terminating local endpoint still serves', ...fromExternal, dst: '10.254.0.11', port: 30084, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n0p1'], sourceTranslated: false, policy: 'Local' } },
  { name: 'pod -> ClusterIP of the same service: only the ready endpoint', ...fromPod(0, 0), dst: '10.96.0.22', port: 80, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n1p1'], sourceTranslated: false } },
  { name: 'iTP Local with a local endpoint', ...fromPod(0, 0), dst: '10.96.0.30', port: 80, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n0p2'], sourceTranslated: false, policy: 'Local' } },
  { name: 'iTP Local without a local endpoint: DROP', ...fromPod(0, 0), dst: '10.96.0.31', port: 80, protocol: 'TCP', expect: { verdict: 'DROP' }, inMode: { ipvs: { verdict: 'REJECT' } } },
  { name: 'iTP and eTP Local: pod -> NodePort still short-circuits to the cluster endpoints', ...fromPod(0, 0), dst: '10.254.0.11', port: 30085, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n1p0'], sourceTranslated: false, policy: 'Cluster' } },
  { name: 'iTP and eTP Local: external -> NodePort without a local endpoint: DROP', ...fromExternal, dst: '10.254.0.11', port: 30085, protocol: 'TCP', expect: { verdict: 'DROP' } },
  { name: 'no endpoints: REJECT (TCP)', ...fromPod(0, 0), dst: '10.96.0.40', port: 80, protocol: 'TCP', expect: { verdict: 'REJECT' } },
  { name: 'no endpoints: REJECT (UDP)', ...fromPod(0, 0), dst: '10.96.0.40', port: 53, protocol: 'UDP', expect: { verdict: 'REJECT' } },
  { name: 'topology: zone hints keep traffic in zone-a', ...fromPod(0, 2), dst: '10.96.0.50', port: 80, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n0p0'], sourceTranslated: false } },
  { name: 'topology: one endpoint without hints disables them all', ...fromPod(0, 2), dst: '10.96.0.51', port: 80, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n0p0', 'n1p0'], sourceTranslated: false } },
  { name: 'topology: node hints (PreferSameNode) win over zone hints', ...fromPod(0, 2), dst: '10.96.0.52', port: 80, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n0p0', 'n0p1'], sourceTranslated: false } },
  { name: 'unknown destination passes untouched', ...fromPod(0, 0), dst: '10.96.0.99', port: 80, protocol: 'TCP', expect: { verdict: 'NO_SERVICE' } },
];

// Unallocated ClusterIPs (the ServiceCIDR objects above): kube-proxy's nftables mode drops them, and
// so does eBPF mode; iptables and IPVS let them pass. A ClusterIP of the range keeps its verdicts.
cases.push(
  { name: 'service CIDR: pod -> ClusterIP of a secondary range is served', ...fromPod(0, 0), dst: '10.97.0.10', port: 80, protocol: 'TCP', expect: { verdict: 'FORWARD', pods: ['n1p0'], sourceTranslated: false, kind: 'ClusterIP', targetPort: 8080 } },
  { name: 'service CIDR: pod -> unallocated ClusterIP: nftables and eBPF drop, iptables passes', ...fromPod(0, 0), dst: UNALLOCATED_IP, port: 80, protocol: 'TCP', expect: { verdict: 'NO_SERVICE' }, inMode: { nftables: { verdict: 'DROP' }, ebpf: { verdict: 'DROP' } } },
  { name: 'service CIDR: pod -> unallocated ClusterIP over UDP: dropped whatever the port', ...fromPod(0, 0), dst: UNALLOCATED_IP, port: 53, protocol: 'UDP', expect: { verdict: 'NO_SERVICE' }, inMode: { nftables: { verdict: 'DROP' }, ebpf: { verdict: 'DROP' } } },
  { name: 'service CIDR: pod -> unallocated ClusterIP, IPv6', from: { pod: 'n0p0' }, src: v6(0, 0), dst: UNALLOCATED_IP6, port: 80, protocol: 'TCP', expect: { verdict: 'NO_SERVICE' }, inMode: { nftables: { verdict: 'DROP' }, ebpf: { verdict: 'DROP' } } },
  { name: 'service CIDR: external -> unallocated ClusterIP through n0: dropped too', ...fromExternal, dst: UNALLOCATED_IP, port: 80, protocol: 'TCP', expect: { verdict: 'NO_SERVICE' }, inMode: { nftables: { verdict: 'DROP' }, ebpf: { verdict: 'DROP' } } },
  // nftables mode drops the node's own packets too (its output chain); eBPF mode looks services up only on the way in.
  { name: 'service CIDR: node -> unallocated ClusterIP: nftables drops, eBPF and iptables pass', ...fromNode, dst: UNALLOCATED_IP, port: 80, protocol: 'TCP', expect: { verdict: 'NO_SERVICE' }, inMode: { nftables: { verdict: 'DROP' } } },
  { name: 'service CIDR: an allocated ClusterIP on a port it does not serve keeps its verdict', ...fromPod(0, 0), dst: '10.97.0.10', port: 81, protocol: 'TCP', expect: { verdict: 'NO_SERVICE' }, inMode: { nftables: { verdict: 'REJECT' }, ipvs: { verdict: 'REJECT' } } },
);
