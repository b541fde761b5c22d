// kube-proxy's CategorizeEndpoints (pkg/proxy/topology.go): which endpoints serve Cluster-policy
// traffic (ready, topology-filtered, else serving+terminating), which serve Local-policy
// traffic (local ready, else local serving+terminating), and whether any usable endpoint
// exists at all. Pure.
import type { EndpointState } from './types.ts';

export interface Categorized {
  clusterEndpoints: EndpointState[];
  localEndpoints: EndpointState[];
  hasAnyEndpoints: boolean;
  topologyMode: '' | 'PreferSameZone' | 'PreferSameNode';
}

export interface PolicyNeeds {
  /** iTP Cluster, or externally accessible (the short-circuits need them even under eTP Local). */
  usesClusterEndpoints: boolean;
  /** iTP Local, or externally accessible with eTP Local. */
  usesLocalEndpoints: boolean;
}

/**
 * Topology is all-or-nothing: hints are followed only when every ready endpoint has them and
 * at least one is for this node (or zone); otherwise they are ignored.
 */
export function topologyMode(endpoints: readonly EndpointState[], nodeName: string, zone: string): Categorized['topologyMode'] {
  let allHaveNodeHints = true;
  let hasForNode = false;
  let allHaveZoneHints = true;
  let hasForZone = false;
  for (const ep of endpoints) {
    if (!ep.ready) continue;
    if (ep.zoneHints.length === 0) allHaveZoneHints = false;
    else if (ep.zoneHints.includes(zone)) hasForZone = true;
    if (ep.nodeHints.length === 0) allHaveNodeHints = false;
    else if (ep.nodeHints.includes(nodeName)) hasForNode = true;
  }
  if (allHaveNodeHints && hasForNode) return 'PreferSameNode';
  if (allHaveZoneHints && hasForZone) return 'PreferSameZone';
  return '';
}

function availableForTopology(ep: EndpointState, mode: Categorized['topologyMode'], nodeName: string, zone: string): boolean {
  if (mode === 'PreferSameNode') return ep.nodeHints.includes(nodeName);
  if (mode === 'PreferSameZone') return ep.zoneHints.includes(zone);
  return true;
}

export function categorizeEndpoints(endpoints: readonly EndpointState[], needs: PolicyNeeds, nodeName: string, zone: string): Categorized {
  let clusterEndpoints: EndpointState[] = [];
  let localEndpoints: EndpointState[] = [];
  let hasAnyEndpoints = false;
  let mode: Categorized['topologyMode'] = '';

  if (needs.usesClusterEndpoints) {
    mode = topologyMode(endpoints, nodeName, zone);
    clusterEndpoints = endpoints.filter((ep) => ep.ready && availableForTopology(ep, mode, nodeName, zone));
    // No ready endpoint anywhere (topology would have been dropped otherwise): fall back to
    // endpoints that still serve while terminating.
    if (clusterEndpoints.length === 0) clusterEndpoints = endpoints.filter((ep) => ep.serving && ep.terminating);
    if (clusterEndpoints.length > 0) hasAnyEndpoints = true;
  }
  if (!needs.usesLocalEndpoints) return { clusterEndpoints, localEndpoints, hasAnyEndpoints, topologyMode: mode };

  let hasLocalReady = false;
  let hasLocalServingTerminating = false;
  for (const ep of endpoints) {
    if (ep.ready) {
      hasAnyEndpoints = true;
      if (ep.local) hasLocalReady = true;
    } else if (ep.serving && ep.terminating) {
      hasAnyEndpoints = true;
      if (ep.local) hasLocalServingTerminating = true;
    }
  }
  if (hasLocalReady) localEndpoints = endpoints.filter((ep) => ep.local && ep.ready);
  else if (hasLocalServingTerminating) localEndpoints = endpoints.filter((ep) => ep.local && ep.serving && ep.terminating);
  return { clusterEndpoints, localEndpoints, hasAnyEndpoints, topologyMode: mode };
}
