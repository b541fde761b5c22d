// The cluster's service CIDRs: the ranges ClusterIPs are allocated from. Traffic addressed into
// them that no Service holds is traffic to an unallocated ClusterIP, which kube-proxy's nftables
// mode drops (its cluster-ips-check chain) and so does the eBPF datapath (plan.ts says which modes).
//
// Where they come from. kube-proxy's nftables proxier learns them only from ServiceCIDR objects
// (networking.k8s.io/v1), which it watches when the MultiCIDRServiceAllocator feature is on (GA
// and on by default since 1.33; its OnServiceCIDRsChanged gets the union of every object's
// spec.cidrs); with the feature off it has no service CIDRs and drops nothing (kube-proxy itself
// has no service-range flag: the API server makes the default "kubernetes" ServiceCIDR object
// from its own --service-cluster-ip-range). Switchyard takes the objects when the API server has
// any, as kube-proxy does, and otherwise the configured value (`serviceCIDRs`, or the
// --service-cluster-ip-range flag): an API server without the resource (404), manifests without
// the objects, or a cluster that has none. Status (Ready) is not looked at, as in kube-proxy.
import { parseCidr, type Family } from './ip.ts';
import type { Rejection } from './rejections.ts';

export type ServiceCIDRSource = 'ServiceCIDR' | 'configuration' | 'none';

export interface EffectiveServiceCIDRs {
  source: ServiceCIDRSource;
  /** Canonical CIDRs, sorted, without duplicates. */
  cidrs: readonly string[];
}

/** A ServiceCIDR object's name and the valid CIDRs of its spec (canonical); what else it says is refused. */
export function validateServiceCIDR(obj: unknown): { name: string; cidrs: string[]; rejections: Rejection[] } | undefined {
  if (obj === null || typeof obj !== 'object') return undefined;
  const name = (obj as { metadata?: { name?: unknown } }).metadata?.name;
  if (typeof name !== 'string' || name === '') return undefined;
  const object = `ServiceCIDR ${name}`;
  const spec = (obj as { spec?: { cidrs?: unknown } }).spec;
  const listed = spec?.cidrs;
  const rejections: Rejection[] = [];
  const cidrs: string[] = [];
  if (listed !== undefined && listed !== null && !Array.isArray(listed)) {
    rejections.push({ object, reason: 'invalid-field', detail: 'spec.cidrs is not a list', dropped: 'object' });
    return { name, cidrs, rejections };
  }
  ((listed as unknown[] | undefined) ?? []).forEach((text, i) => {
    const c = typeof text === 'string' ? parseCidr(text) : undefined;
    if (c === undefined) rejections.push({ object, reason: 'invalid-cidr', detail: `spec.cidrs[${i}] ${JSON.stringify(text)}`, dropped: 'part' });
    else cidrs.push(c.text);
  });
  return { name, cidrs, rejections };
}

function canonical(list: Iterable<string>): string[] {
  const out = new Set<string>();
  for (const text of list) {
    const c = parseCidr(text);
    if (c !== undefined) out.add(c.text);
  }
  return [...out].sort();
}

/** The objects' CIDRs when there are any, else the configured ones. */
export function effectiveServiceCIDRs(configured: readonly string[] | undefined, objects: Iterable<readonly string[]>): EffectiveServiceCIDRs {
  const fromObjects = canonical([...objects].flat());
  if (fromObjects.length > 0) return { source: 'ServiceCIDR', cidrs: fromObjects };
  const fromConfig = canonical(configured ?? []);
  return fromConfig.length > 0 ? { source: 'configuration', cidrs: fromConfig } : { source: 'none', cidrs: [] };
}

export function ofFamily(cidrs: readonly string[], family: Family): string[] {
  return cidrs.filter((c) => parseCidr(c)?.family === family);
}
