// The lab every mode's semantic-case test runs in, and each node's model of the semantic cluster:
// shared by the eBPF, iptables, nftables and IPVS tests so that they hold one table to one setup.
import type { V1Node } from '@kubernetes/client-node';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import type { ModelConfig } from '../../control/model/types.ts';
import { cases, config, EXTERNAL_IP, KUBE_PROXY_ROUTED, LB_BLOCKED_IP, LB_IP, node as node0, serviceCIDRs, services, slices, UNALLOCATED_IP, variants, type SemanticCase } from '../cases/semantics.ts';
import { Lab, type LabNode } from '../lab/lab.ts';
import { routeServiceIpsViaNode0 } from './case-check.ts';

export function nodeObject(n: LabNode): V1Node {
  if (n.index === 0) return node0;
  return {
    metadata: { name: n.name, labels: { 'topology.kubernetes.io/zone': 'zone-b' } },
    spec: { podCIDRs: [n.podCidrV4, n.podCidrV6] },
    status: { addresses: [{ type: 'InternalIP', address: n.ipv4 }, { type: 'InternalIP', address: n.ipv6 }] },
  };
}

/** Node n's model: the semantic cluster, unless `fill` loads another one. Flushed. */
export function semanticTracker(n: LabNode, fill?: (tracker: ChangeTracker) => void, model: ModelConfig = config): ChangeTracker {
  const tracker = new ChangeTracker(model, nodeFacts(n.name, nodeObject(n), [`10.244.${n.index}.1`]));
  if (fill !== undefined) fill(tracker);
  else {
    for (const s of services) tracker.upsertService(s);
    for (const s of slices) tracker.upsertSlice(s);
    for (const c of serviceCIDRs) tracker.upsertServiceCIDR(c);
  }
  tracker.flush();
  return tracker;
}

/** Two nodes of three pods, the external client routing LB and external IPs through n0. */
export async function semanticLab(): Promise<Lab> {
  const lab = await Lab.create({ nodes: 2, podsPerNode: 3, ports: [8080, 8081] });
  await routeServiceIpsViaNode0(lab, [LB_IP, LB_BLOCKED_IP, '10.254.0.52', EXTERNAL_IP, UNALLOCATED_IP, ...KUBE_PROXY_ROUTED]);
  return lab;
}

/** Whether a lab can send the case: a node process cannot send from an LB IP it does not hold (trace covers it). */
const sendable = (x: SemanticCase): boolean => !('node' in x.from && x.src === LB_IP);

/** The cases a lab can send. */
export const labCases = cases.filter(sendable);

/** The configuration variants, with the cases a lab can send; run after the table, each re-syncing every node. */
export const labVariants = variants.map((v) => ({ ...v, cases: v.cases.filter(sendable) }));
