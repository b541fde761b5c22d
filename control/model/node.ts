// The proxy's own Node object, reduced to the facts the model and the health server need. Pure.
import type { V1Node } from '@kubernetes/client-node';
import { canonicalIp, familyOf, parseCidr, type Family } from './ip.ts';
import type { NodeFacts } from './types.ts';

export const ZONE_LABEL = 'topology.kubernetes.io/zone';
export const TO_BE_DELETED_TAINT = 'ToBeDeletedByClusterAutoscaler';

/**
 * Builds the node facts from its object and, optionally, the host's own interface addresses
 * (which the API does not list but where NodePorts also answer).
 */
export function nodeFacts(name: string, node: V1Node | undefined, hostAddresses: readonly string[] = []): NodeFacts {
  const addresses: Record<Family, string[]> = { 4: [], 6: [] };
  const primaryIPs: Partial<Record<Family, string>> = {};
  const add = (text: unknown): string | undefined => {
    const ip = typeof text === 'string' ? canonicalIp(text) : undefined;
    if (ip === undefined) return undefined;
    const family = familyOf(ip)!;
    if (!addresses[family].includes(ip)) addresses[family].push(ip);
    return ip;
  };
  const statusAddresses = Array.isArray(node?.status?.addresses) ? node.status.addresses : [];
  for (const type of ['InternalIP', 'ExternalIP']) {
    for (const a of statusAddresses) {
      if (a?.type !== type) continue;
      const ip = add(a.address);
      if (ip !== undefined) primaryIPs[familyOf(ip)!] ??= ip;
    }
  }
  for (const ip of hostAddresses) add(ip);
  const labels = node?.metadata?.labels ?? {};
  const zone = typeof labels[ZONE_LABEL] === 'string' ? labels[ZONE_LABEL] : '';
  const cidrs = [...(Array.isArray(node?.spec?.podCIDRs) ? node.spec.podCIDRs : []), ...(typeof node?.spec?.podCIDR === 'string' ? [node.spec.podCIDR] : [])];
  const podCIDRs = [...new Set(cidrs.map((c) => parseCidr(c)?.text).filter((c): c is string => c !== undefined))];
  const taints = Array.isArray(node?.spec?.taints) ? node.spec.taints : [];
  return {
    name,
    zone,
    podCIDRs,
    addresses,
    primaryIPs,
    deleting: node?.metadata?.deletionTimestamp !== undefined && node.metadata.deletionTimestamp !== null,
    toBeDeleted: taints.some((t) => t?.key === TO_BE_DELETED_TAINT),
  };
}
