// Compact builders for Service and EndpointSlice objects in tests.
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';

export interface PortSpec {
  name?: string;
  port: number;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  targetPort?: number | string;
  nodePort?: number;
}

export interface ServiceSpec {
  ns?: string;
  name: string;
  type?: 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
  clusterIPs?: string[];
  ports: PortSpec[];
  externalIPs?: string[];
  lbIPs?: Array<string | { ip: string; ipMode: 'VIP' | 'Proxy' }>;
  sourceRanges?: string[];
  eTP?: 'Cluster' | 'Local';
  iTP?: 'Cluster' | 'Local';
  affinity?: number;
  healthCheckNodePort?: number;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
}

export function service(s: ServiceSpec): V1Service {
  const ns = s.ns ?? 'demo';
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: s.name, namespace: ns, uid: `uid-${ns}-${s.name}`, resourceVersion: '1', annotations: s.annotations, labels: s.labels },
    spec: {
      type: s.type ?? 'ClusterIP',
      clusterIP: s.clusterIPs?.[0],
      clusterIPs: s.clusterIPs,
      ipFamilies: s.clusterIPs?.map((ip) => (ip.includes(':') ? 'IPv6' : 'IPv4')),
      ports: s.ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol ?? 'TCP', targetPort: p.targetPort ?? p.port, nodePort: p.nodePort })),
      externalIPs: s.externalIPs,
      loadBalancerSourceRanges: s.sourceRanges,
      externalTrafficPolicy: s.type === 'NodePort' || s.type === 'LoadBalancer' ? (s.eTP ?? 'Cluster') : s.eTP,
      internalTrafficPolicy: s.iTP ?? 'Cluster',
      sessionAffinity: s.affinity === undefined ? 'None' : 'ClientIP',
      sessionAffinityConfig: s.affinity === undefined ? undefined : { clientIP: { timeoutSeconds: s.affinity } },
      healthCheckNodePort: s.healthCheckNodePort,
    },
    status: {
      loadBalancer: {
        ingress: s.lbIPs?.map((i) => (typeof i === 'string' ? { ip: i } : { ip: i.ip, ipMode: i.ipMode })),
      },
    },
  };
}

export interface EndpointSpec {
  ip: string;
  node: string;
  zone?: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
  zoneHints?: string[];
  nodeHints?: string[];
}

export interface SliceSpec {
  ns?: string;
  name: string;
  service: string;
  family?: 4 | 6;
  ports: Array<{ name?: string; port: number; protocol?: 'TCP' | 'UDP' | 'SCTP' }>;
  endpoints: EndpointSpec[];
}

export function slice(s: SliceSpec): V1EndpointSlice {
  const ns = s.ns ?? 'demo';
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: s.name, namespace: ns, uid: `uid-${ns}-${s.name}`, resourceVersion: '1', labels: { 'kubernetes.io/service-name': s.service } },
    addressType: (s.family ?? 4) === 4 ? 'IPv4' : 'IPv6',
    ports: s.ports.map((p) => ({ name: p.name ?? '', port: p.port, protocol: p.protocol ?? 'TCP' })),
    endpoints: s.endpoints.map((e) => ({
      addresses: [e.ip],
      nodeName: e.node,
      zone: e.zone,
      conditions: { ready: e.ready ?? true, serving: e.serving ?? e.ready ?? true, terminating: e.terminating ?? false },
      hints: e.zoneHints || e.nodeHints ? { forZones: e.zoneHints?.map((name) => ({ name })), forNodes: e.nodeHints?.map((name) => ({ name })) } : undefined,
    })),
  };
}
