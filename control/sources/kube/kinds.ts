// The kinds a service proxy watches, with their API paths and wire types.
import type { V1EndpointSlice, V1Node, V1Service, V1ServiceCIDR } from '@kubernetes/client-node';

export type KindName = 'Service' | 'EndpointSlice' | 'Node' | 'ServiceCIDR';

export interface KindObjects {
  Service: V1Service;
  EndpointSlice: V1EndpointSlice;
  Node: V1Node;
  ServiceCIDR: V1ServiceCIDR;
}

export type KubeObject = KindObjects[KindName];

export interface KindSpec {
  kind: KindName;
  apiVersion: string;
  /** Cluster-wide collection path. */
  path: string;
  protoType: string;
  protoListType: string;
}

export const KINDS: Readonly<Record<KindName, KindSpec>> = {
  Service: {
    kind: 'Service',
    apiVersion: 'v1',
    path: '/api/v1/services',
    protoType: 'k8s.io.api.core.v1.Service',
    protoListType: 'k8s.io.api.core.v1.ServiceList',
  },
  EndpointSlice: {
    kind: 'EndpointSlice',
    apiVersion: 'discovery.k8s.io/v1',
    path: '/apis/discovery.k8s.io/v1/endpointslices',
    protoType: 'k8s.io.api.discovery.v1.EndpointSlice',
    protoListType: 'k8s.io.api.discovery.v1.EndpointSliceList',
  },
  Node: {
    kind: 'Node',
    apiVersion: 'v1',
    path: '/api/v1/nodes',
    protoType: 'k8s.io.api.core.v1.Node',
    protoListType: 'k8s.io.api.core.v1.NodeList',
  },
  // The cluster's service IP ranges (networking.k8s.io/v1 since Kubernetes 1.33; older API
  // servers answer 404, and the source carries on without them).
  ServiceCIDR: {
    kind: 'ServiceCIDR',
    apiVersion: 'networking.k8s.io/v1',
    path: '/apis/networking.k8s.io/v1/servicecidrs',
    protoType: 'k8s.io.api.networking.v1.ServiceCIDR',
    protoListType: 'k8s.io.api.networking.v1.ServiceCIDRList',
  },
};

/** Every kind a source delivers; the agent syncs once each has synced. */
export const SOURCE_KINDS: readonly KindName[] = ['Service', 'EndpointSlice', 'Node', 'ServiceCIDR'];

/** Kinds without a namespace. */
export const CLUSTER_SCOPED: ReadonlySet<KindName> = new Set<KindName>(['Node', 'ServiceCIDR']);

/** kube-proxy's label selector for Services and EndpointSlices. */
export const PROXY_LABEL_SELECTOR = '!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless';

/** "namespace/name", or "name" for cluster-scoped objects. */
export function objectKey(obj: { metadata?: { name?: string; namespace?: string } }): string {
  const ns = obj.metadata?.namespace;
  const name = obj.metadata?.name ?? '';
  return ns ? `${ns}/${name}` : name;
}
