// The semantic case table: one small cluster laid out on the lab's addresses, and packets with
// the verdict kube-proxy's semantics give them on node n0. trace must give these answers, and
// every datapath (eBPF, iptables, nftables, IPVS) must behave as trace says.
//
// Lab addresses: node n<i> 10.254.0.(11+i) / fd00:254::(11+i); pod n<i>p<j> 10.244.i.(10+j) /
// fd00:10:244:i::(10+j); external client 10.254.0.200. Pod servers listen on 8080 and 8081.
//
// kube-proxy's proxier tests (pkg/proxy/iptables and pkg/proxy/nftables proxier_test.go): every
// flow their runPacketFlowTests check has a case here, named in a comment per group, except:
// - TestClusterIPGeneral "TCP, UDP, and SCTP on same port (SCTP)": the lab's probes speak TCP and
//   UDP only (SCTP has its own lab test, test/backends/ebpf-sctp.test.ts);
// - TestClusterIPGeneral "packet to unallocated cluster ip" (DROP): the ServiceCIDR cases at the
//   end of the table;
// - TestLoadBalancer "same node to LB, SNATted to LB": trace only (a lab node cannot send from
//   an LB IP it does not hold; see labCases);
// - TestNodePorts with localhost-nodeports and other nodeport-addresses: another configuration,
//   held by test/backends/localhost-nodeport-lab.test.ts (here only the listed-addresses case);
// - TestInternalExternalMasquerade "no LocalTrafficDetector" and "masqueradeAll" are `variants`
//   (below the table), except "external to ClusterIP" unmasqueraded towards a remote endpoint: its
//   reply would leave that node straight to the client, not through n0 (kube-proxy's tracer
//   never sees replies); "masqueradeAll, no LocalTrafficDetector" only repeats the two. trace
//   and the eBPF, iptables and nftables labs run the variants; the IPVS VM run does not yet;
// - TestHealthCheckNodePort: the health check server's (test/server/service-health.test.ts);
// - TestLoadBalancerIngressRouteTypeProxy with the LoadBalancerIPMode gate off: gates are not
//   configurable here (ipMode Proxy, VIP and unset are cases).
// Rule-layout tests (TestOverall*Rules, TestBadIPs, TestSyncProxyRulesRepeated) are the golden
// tests' (test/cases/kube-proxy-cluster.ts), not flows.
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

// ---- kube-proxy's proxier tests: the services and slices their flows need (cases below) ----
const term = { ready: false, serving: true, terminating: true } as const;
const gone = { ready: false, serving: false, terminating: true } as const;
/** Addresses of these services the external client routes through n0 (LB IPs, external IPs, ClusterIPs). */
export const KUBE_PROXY_ROUTED = ['10.254.0.53', '10.254.0.54', '10.254.0.55', '10.254.0.56', '10.254.0.57', '10.254.0.101', '10.254.0.102', '10.254.0.103', '10.96.1.20', '10.96.1.40'];

const kubeProxyServices: V1Service[] = [
  // TestNoEndpointsReject: no slice at all.
  service({ name: 'noep-lb', type: 'LoadBalancer', clusterIPs: ['10.96.1.10'], ports: [{ port: 80, nodePort: 30086 }], externalIPs: ['10.254.0.101'], lbIPs: ['10.254.0.53'] }),
  // TestLoadBalancer, TestExternalTrafficPolicyCluster, TestNodePorts (IPv6), TestInternalExternalMasquerade.
  service({
    name: 'lb-cluster',
    type: 'LoadBalancer',
    clusterIPs: ['10.96.1.20', 'fd00:96::1:20'],
    ports: [
      { name: 'http', port: 80, nodePort: 30087 },
      { name: 'dns', port: 53, protocol: 'UDP', targetPort: 8080, nodePort: 30088 },
    ],
    externalIPs: ['10.254.0.102'],
    lbIPs: ['10.254.0.54', { ip: '10.254.0.55', ipMode: 'VIP' }],
  }),
  // TestExternalTrafficPolicyLocal, TestInternalExternalMasquerade (eTP Local).
  service({ name: 'etp-local', type: 'LoadBalancer', clusterIPs: ['10.96.1.30'], ports: [{ port: 80, nodePort: 30089 }], externalIPs: ['10.254.0.103'], lbIPs: ['10.254.0.56'], eTP: 'Local' }),
  // TestInternalTrafficPolicy (several local endpoints), TestInternalExternalMasquerade (iTP Local).
  service({ name: 'itp-local-lb', type: 'LoadBalancer', clusterIPs: ['10.96.1.40'], ports: [{ port: 80, nodePort: 30090 }], lbIPs: ['10.254.0.57'], iTP: 'Local' }),
  // TestTerminatingEndpointsTrafficPolicyLocal / ...Cluster (a NodePort stands for their LB IP: same external chain).
  service({ name: 'term-ready', type: 'NodePort', clusterIPs: ['10.96.1.50'], ports: [{ port: 80, nodePort: 30091 }], eTP: 'Local' }),
  service({ name: 'term-remote', type: 'NodePort', clusterIPs: ['10.96.1.51'], ports: [{ port: 80, nodePort: 30092 }], eTP: 'Local' }),
  service({ name: 'term-none', type: 'NodePort', clusterIPs: ['10.96.1.52'], ports: [{ port: 80, nodePort: 30093 }], eTP: 'Local' }),
  service({ name: 'term-cluster', type: 'NodePort', clusterIPs: ['10.96.1.53'], ports: [{ port: 80, nodePort: 30094 }] }),
  service({ name: 'term-cluster-only', type: 'NodePort', clusterIPs: ['10.96.1.54'], ports: [{ port: 80, nodePort: 30095 }] }),
  // TestOverallIPTablesRules / TestOverallNFTablesRules svc5: ClientIP affinity on an external frontend.
  service({ name: 'sticky-np', type: 'NodePort', clusterIPs: ['10.96.1.60'], ports: [{ port: 80, nodePort: 30096 }], affinity: 60 }),
];

const kubeProxySlices: V1EndpointSlice[] = [
  slice({
    name: 'lb-cluster-v4',
    service: 'lb-cluster',
    ports: [
      { name: 'http', port: 8080 },
      { name: 'dns', port: 8080, protocol: 'UDP' },
    ],
    endpoints: [ep(0, 0), ep(1, 2)],
  }),
  slice({
    name: 'lb-cluster-v6',
    service: 'lb-cluster',
    family: 6,
    ports: [
      { name: 'http', port: 8080 },
      { name: 'dns', port: 8080, protocol: 'UDP' },
    ],
    endpoints: [ep6(0, 0), ep6(1, 2)],
  }),
  slice({ name: 'etp-local-x', service: 'etp-local', ports: [{ port: 8080 }], endpoints: [ep(0, 2), ep(1, 1)] }),
  slice({ name: 'itp-local-lb-x', service: 'itp-local-lb', ports: [{ port: 8080 }], endpoints: [ep(0, 0), ep(0, 1), ep(1, 0)] }),
  // Ready local endpoints win over serving terminating and not serving ones.
  slice({ name: 'term-ready-x', service: 'term-ready', ports: [{ port: 8080 }], endpoints: [ep(0, 0), ep(0, 1, term), ep(0, 2, gone), ep(1, 0)] }),
  // Only a remote serving terminating endpoint: it serves the cluster, nothing serves eTP Local.
  slice({ name: 'term-remote-x', service: 'term-remote', ports: [{ port: 8080 }], endpoints: [ep(1, 0, term)] }),
  // Nothing serving anywhere: as if there were no endpoints.
  slice({ name: 'term-none-x', service: 'term-none', ports: [{ port: 8080 }], endpoints: [ep(0, 0, gone), ep(1, 0, gone)] }),
  slice({ name: 'term-cluster-x', service: 'term-cluster', ports: [{ port: 8080 }], endpoints: [ep(0, 0), ep(1, 0, term), ep(1, 1, gone), ep(1, 2)] }),
  // Only terminating endpoints: the serving ones, on either node.
  slice({ name: 'term-cluster-only-x', service: 'term-cluster-only', ports: [{ port: 8080 }], endpoints: [ep(0, 1, term), ep(1, 1, term), ep(1, 2, gone)] }),
  slice({ name: 'sticky-np-x', service: 'sticky-np', ports: [{ port: 8080 }], endpoints: [ep(0, 1), ep(1, 1)] }),
];

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
  ...kubeProxyServices,
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
  ...kubeProxySlices,
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
  /** Modes whose lab cannot send this case, and why (trace still answers it). */
  notSentIn?: Partial<Record<'nftables' | 'ipvs' | 'ebpf', string>>;
}

const fromPod = (node: number, pod: number): { from: Origin; src: string } => ({ from: { pod: `n${node}p${pod}` }, src: v4(node, pod) });
const fromNode = { from: { node: 'n0' }, src: '10.254.0.11' } as const;
const fromExternal = { from: { external: true }, src: EXTERNAL_CLIENT } as const;

// ---- kube-proxy's proxier tests: flows of theirs the cases above do not already check ----
const v6External = { from: { external: true }, src: 'fd00:254::200' } as const;
const all = (pods: string[], sourceTranslated: boolean, extra: { policy?: 'Cluster' | 'Local'; kind?: string; targetPort?: number } = {}): SemanticCase['expect'] => ({ verdict: 'FORWARD', pods, sourceTranslated, ...extra });
const kubeProxyCases: SemanticCase[] = [
  // TestNoEndpointsReject (the ClusterIP flow is "no endpoints: REJECT (TCP)").
  { name: 'no endpoints: external -> externalIP: REJECT', ...fromExternal, dst: '10.254.0.101', port: 80, protocol: 'TCP', expect: { verdict: 'REJECT' } },
  { name: 'no endpoints: pod -> NodePort: REJECT', ...fromPod(0, 0), dst: '10.254.0.11', port: 30086, protocol: 'TCP', expect: { verdict: 'REJECT' } },
  { name: 'no endpoints: external -> NodePort: REJECT', ...fromExternal, dst: '10.254.0.11', port: 30086, protocol: 'TCP', expect: { verdict: 'REJECT' } },
  { name: 'no endpoints: pod -> LB IP: REJECT', ...fromPod(0, 0), dst: '10.254.0.53', port: 80, protocol: 'TCP', expect: { verdict: 'REJECT' } },
  { name: 'no endpoints: external -> LB IP: REJECT', ...fromExternal, dst: '10.254.0.53', port: 80, protocol: 'TCP', expect: { verdict: 'REJECT' } },
  // TestExternalTrafficPolicyCluster, TestLoadBalancer (two LB IPs), TestInternalExternalMasquerade
  // (eTP Cluster rows), TestNodePorts (IPv6), TestClusterIPGeneral ("svc1 does not accept svc2's ports").
  { name: 'eTP Cluster: pod -> externalIP is masqueraded, all endpoints', ...fromPod(0, 1), dst: '10.254.0.102', port: 80, protocol: 'TCP', expect: all(['n0p0', 'n1p2'], true, { kind: 'ExternalIP' }) },
  { name: 'eTP Cluster: external -> externalIP is masqueraded, all endpoints', ...fromExternal, dst: '10.254.0.102', port: 80, protocol: 'TCP', expect: all(['n0p0', 'n1p2'], true, { policy: 'Cluster' }) },
  { name: 'eTP Cluster: pod -> LB IP is masqueraded, all endpoints', ...fromPod(0, 1), dst: '10.254.0.54', port: 80, protocol: 'TCP', expect: all(['n0p0', 'n1p2'], true, { kind: 'LoadBalancer' }) },
  { name: 'eTP Cluster: external -> LB IP is masqueraded, all endpoints', ...fromExternal, dst: '10.254.0.54', port: 80, protocol: 'TCP', expect: all(['n0p0', 'n1p2'], true, { kind: 'LoadBalancer' }) },
  { name: 'eTP Cluster: external -> second LB IP (ipMode VIP) is served alike', ...fromExternal, dst: '10.254.0.55', port: 80, protocol: 'TCP', expect: all(['n0p0', 'n1p2'], true) },
  { name: 'eTP Cluster: node -> LB IP is masqueraded, all endpoints', ...fromNode, dst: '10.254.0.54', port: 80, protocol: 'TCP', expect: all(['n0p0', 'n1p2'], true) },
  { name: 'eTP Cluster: pod -> NodePort is masqueraded, all endpoints', ...fromPod(0, 1), dst: '10.254.0.11', port: 30087, protocol: 'TCP', expect: all(['n0p0', 'n1p2'], true, { kind: 'NodePort' }) },
  { name: 'eTP Cluster: node -> NodePort is masqueraded, all endpoints', ...fromNode, dst: '10.254.0.11', port: 30087, protocol: 'TCP', expect: all(['n0p0', 'n1p2'], true) },
  { name: 'external -> ClusterIP is masqueraded (not from a pod)', ...fromExternal, dst: '10.96.1.20', port: 80, protocol: 'TCP', expect: all(['n0p0', 'n1p2'], true, { kind: 'ClusterIP' }) },
  { name: 'external -> NodePort over UDP (target port by name)', ...fromExternal, dst: '10.254.0.11', port: 30088, protocol: 'UDP', expect: all(['n0p0', 'n1p2'], true, { targetPort: 8080 }) },
  { name: 'external -> NodePort over IPv6: masqueraded, all endpoints', ...v6External, dst: 'fd00:254::b', port: 30087, protocol: 'TCP', expect: all(['n0p0', 'n1p2'], true, { kind: 'NodePort' }) },
  { name: 'pod -> ClusterIP on a port no service port has', ...fromPod(0, 1), dst: '10.96.1.20', port: 443, protocol: 'TCP', expect: { verdict: 'NO_SERVICE' }, inMode: { nftables: { verdict: 'REJECT' }, ipvs: { verdict: 'REJECT' } } },
  // TestExternalTrafficPolicyLocal, TestOnlyLocalExternalIPs, TestInternalExternalMasquerade (eTP
  // Local rows; pod and node -> NodePort are the np-local cases, external -> LB IP the lb one).
  { name: 'eTP Local: external -> externalIP reaches only the local endpoint, client IP kept', ...fromExternal, dst: '10.254.0.103', port: 80, protocol: 'TCP', expect: all(['n0p2'], false, { policy: 'Local', kind: 'ExternalIP' }) },
  { name: 'eTP Local: external -> NodePort reaches only the local endpoint, client IP kept', ...fromExternal, dst: '10.254.0.11', port: 30089, protocol: 'TCP', expect: all(['n0p2'], false, { policy: 'Local' }) },
  { name: 'eTP Local: pod -> LB IP short-circuits to all endpoints, unmasqueraded', ...fromPod(0, 0), dst: '10.254.0.56', port: 80, protocol: 'TCP', expect: all(['n0p2', 'n1p1'], false, { policy: 'Cluster' }), inMode: { ipvs: all(['n0p2'], false, { policy: 'Local' }) } },
  { name: 'eTP Local: node -> LB IP (the node is in its source ranges) is masqueraded, all endpoints', ...fromNode, dst: LB_IP, port: 80, protocol: 'TCP', expect: all(['n0p0', 'n1p0'], true, { policy: 'Cluster' }), inMode: { ipvs: all(['n0p0'], false, { policy: 'Local' }) } },
  // TestInternalTrafficPolicy ("multiple local endpoints"), TestInternalExternalMasquerade (iTP
  // Local rows: iTP applies to ClusterIP traffic only and does not change masquerading).
  { name: 'iTP Local: pod -> ClusterIP reaches every local endpoint, only them', ...fromPod(0, 2), dst: '10.96.1.40', port: 80, protocol: 'TCP', expect: all(['n0p0', 'n0p1'], false, { policy: 'Local' }) },
  { name: 'iTP Local: node -> ClusterIP reaches the local endpoints, masqueraded', ...fromNode, dst: '10.96.1.40', port: 80, protocol: 'TCP', expect: all(['n0p0', 'n0p1'], true, { policy: 'Local' }) },
  { name: 'iTP Local: external -> ClusterIP reaches the local endpoints, masqueraded', ...fromExternal, dst: '10.96.1.40', port: 80, protocol: 'TCP', expect: all(['n0p0', 'n0p1'], true, { policy: 'Local' }) },
  { name: 'iTP Local: pod -> NodePort is not internal traffic: all endpoints, masqueraded', ...fromPod(0, 2), dst: '10.254.0.11', port: 30090, protocol: 'TCP', expect: all(['n0p0', 'n0p1', 'n1p0'], true, { policy: 'Cluster' }) },
  { name: 'iTP Local: node -> NodePort: all endpoints, masqueraded', ...fromNode, dst: '10.254.0.11', port: 30090, protocol: 'TCP', expect: all(['n0p0', 'n0p1', 'n1p0'], true) },
  { name: 'iTP Local: external -> NodePort: all endpoints, masqueraded', ...fromExternal, dst: '10.254.0.11', port: 30090, protocol: 'TCP', expect: all(['n0p0', 'n0p1', 'n1p0'], true) },
  { name: 'iTP Local: pod -> LB IP: all endpoints, masqueraded', ...fromPod(0, 2), dst: '10.254.0.57', port: 80, protocol: 'TCP', expect: all(['n0p0', 'n0p1', 'n1p0'], true) },
  { name: 'iTP Local: node -> LB IP: all endpoints, masqueraded', ...fromNode, dst: '10.254.0.57', port: 80, protocol: 'TCP', expect: all(['n0p0', 'n0p1', 'n1p0'], true) },
  { name: 'iTP Local: external -> LB IP: all endpoints, masqueraded', ...fromExternal, dst: '10.254.0.57', port: 80, protocol: 'TCP', expect: all(['n0p0', 'n0p1', 'n1p0'], true) },
  // TestTerminatingEndpointsTrafficPolicyLocal ("ready endpoints exist", "terminating endpoints on
  // remote node", "no usable endpoints on any node"; "only terminating endpoints exist" is the term
  // cases) and ...TrafficPolicyCluster ("ready endpoints exist", "only terminating endpoints
  // exist", which also stands for its remote-only variant; "no usable endpoints" is term-none's).
  { name: 'terminating, eTP Local: pod -> ClusterIP reaches the ready endpoints only', ...fromPod(0, 1), dst: '10.96.1.50', port: 80, protocol: 'TCP', expect: all(['n0p0', 'n1p0'], false) },
  { name: 'terminating, eTP Local: external -> NodePort reaches the ready local endpoint only', ...fromExternal, dst: '10.254.0.11', port: 30091, protocol: 'TCP', expect: all(['n0p0'], false, { policy: 'Local' }) },
  { name: 'terminating, eTP Local: pod -> ClusterIP falls back to the remote serving terminating endpoint', ...fromPod(0, 0), dst: '10.96.1.51', port: 80, protocol: 'TCP', expect: all(['n1p0'], false) },
  { name: 'terminating, eTP Local: external -> NodePort with only a remote terminating endpoint: DROP', ...fromExternal, dst: '10.254.0.11', port: 30092, protocol: 'TCP', expect: { verdict: 'DROP' } },
  { name: 'terminating, nothing serving: pod -> ClusterIP: REJECT', ...fromPod(0, 1), dst: '10.96.1.52', port: 80, protocol: 'TCP', expect: { verdict: 'REJECT' } },
  { name: 'terminating, nothing serving: external -> NodePort: REJECT', ...fromExternal, dst: '10.254.0.11', port: 30093, protocol: 'TCP', expect: { verdict: 'REJECT' } },
  { name: 'terminating, eTP Cluster: pod -> ClusterIP reaches the ready endpoints only', ...fromPod(0, 1), dst: '10.96.1.53', port: 80, protocol: 'TCP', expect: all(['n0p0', 'n1p2'], false) },
  { name: 'terminating, eTP Cluster: external -> NodePort reaches the ready endpoints, masqueraded', ...fromExternal, dst: '10.254.0.11', port: 30094, protocol: 'TCP', expect: all(['n0p0', 'n1p2'], true, { policy: 'Cluster' }) },
  { name: 'terminating, eTP Cluster: pod -> ClusterIP with only terminating endpoints uses the serving ones', ...fromPod(0, 0), dst: '10.96.1.54', port: 80, protocol: 'TCP', expect: all(['n0p1', 'n1p1'], false) },
  { name: 'terminating, eTP Cluster: external -> NodePort with only terminating endpoints uses the serving ones, masqueraded', ...fromExternal, dst: '10.254.0.11', port: 30095, protocol: 'TCP', expect: all(['n0p1', 'n1p1'], true) },
  // TestOverall*Rules svc5: ClientIP affinity on an external frontend.
  { name: 'external -> NodePort with ClientIP affinity: masqueraded', ...fromExternal, dst: '10.254.0.11', port: 30096, protocol: 'TCP', expect: all(['n0p1', 'n1p1'], true) },
];

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
  ...kubeProxyCases,
];

/** The same cluster under another configuration, and the flows whose answer it changes. */
export interface ConfigVariant {
  name: string;
  config: ModelConfig;
  cases: SemanticCase[];
}

// TestInternalExternalMasquerade: its overrides of the base flows, on this table's services.
const IPVS_VIP_SOURCE = "kube-proxy's IPVS mode without a local detector does not masquerade it, and a node connecting to a VIP bound to kube-ipvs0 takes the VIP as its source: a remote endpoint's answer to the VIP never comes back (kube-proxy has no such IPVS test)";

export const variants: ConfigVariant[] = [
  {
    name: 'masqueradeAll',
    config: { ...config, masqueradeAll: true },
    cases: [
      { name: 'masqueradeAll: pod -> ClusterIP is masqueraded', ...fromPod(0, 0), dst: '10.96.0.10', port: 80, protocol: 'TCP', expect: all(['n0p1', 'n1p1'], true, { policy: 'Cluster' }) },
      { name: 'masqueradeAll: pod -> ClusterIP of an eTP Local service is masqueraded', ...fromPod(0, 0), dst: '10.96.1.30', port: 80, protocol: 'TCP', expect: all(['n0p2', 'n1p1'], true) },
      { name: 'masqueradeAll: pod -> ClusterIP of an iTP Local service is masqueraded, local endpoints', ...fromPod(0, 2), dst: '10.96.1.40', port: 80, protocol: 'TCP', expect: all(['n0p0', 'n0p1'], true, { policy: 'Local' }) },
    ],
  },
  {
    // Without local traffic detection a pod is like any other source, and ClusterIP traffic is not masqueraded.
    name: 'no local traffic detection',
    config: { ...config, detectLocalMode: 'None' },
    cases: [
      { name: 'no local detection: node -> ClusterIP is not masqueraded', ...fromNode, dst: '10.96.0.10', port: 80, protocol: 'TCP', expect: all(['n0p1', 'n1p1'], false), notSentIn: { ipvs: IPVS_VIP_SOURCE } },
      { name: 'no local detection: node -> ClusterIP of an eTP Local service is not masqueraded', ...fromNode, dst: '10.96.1.30', port: 80, protocol: 'TCP', expect: all(['n0p2', 'n1p1'], false), notSentIn: { ipvs: IPVS_VIP_SOURCE } },
      { name: 'no local detection: node -> ClusterIP of an iTP Local service is not masqueraded', ...fromNode, dst: '10.96.1.40', port: 80, protocol: 'TCP', expect: all(['n0p0', 'n0p1'], false, { policy: 'Local' }) },
      { name: 'no local detection: external -> ClusterIP of an iTP Local service is not masqueraded', ...fromExternal, dst: '10.96.1.40', port: 80, protocol: 'TCP', expect: all(['n0p0', 'n0p1'], false, { policy: 'Local' }) },
      { name: 'no local detection: pod -> NodePort of an eTP Local service: no short-circuit, the local endpoint', ...fromPod(0, 0), dst: '10.254.0.11', port: 30089, protocol: 'TCP', expect: all(['n0p2'], false, { policy: 'Local' }) },
      { name: 'no local detection: pod -> LB IP of an eTP Local service: no short-circuit, the local endpoint', ...fromPod(0, 0), dst: '10.254.0.56', port: 80, protocol: 'TCP', expect: all(['n0p2'], false, { policy: 'Local' }) },
    ],
  },
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
