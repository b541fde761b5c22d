// Cleanup for kernelspace mode: every load balancer that points only at endpoints of the HNS
// network (ours, or kube-proxy's) and every remote endpoint on it; the CNI's local endpoints stay.
import type { HcnClient } from './hcn-client.ts';
import { ENDPOINT_FLAGS } from './hcn-types.ts';

/** Removes every load balancer pointing at the network's endpoints and every remote endpoint on it (the cleanup subcommand). */
export async function cleanupHns(client: HcnClient, networkName: string): Promise<{ loadBalancers: number; endpoints: number }> {
  const net = (await client.listNetworks()).find((n) => n.Name === networkName);
  if (net?.ID === undefined) return { loadBalancers: 0, endpoints: 0 };
  const endpoints = await client.listEndpoints(net.ID);
  const ours = new Set(endpoints.map((e) => e.ID?.toUpperCase()));
  let loadBalancers = 0;
  for (const lb of await client.listLoadBalancers()) {
    if (lb.ID !== undefined && (lb.HostComputeEndpoints ?? []).every((id) => ours.has(id.toUpperCase()))) {
      await client.deleteLoadBalancer(lb.ID);
      loadBalancers++;
    }
  }
  let removed = 0;
  for (const ep of endpoints) {
    if (ep.ID !== undefined && ((ep.Flags ?? 0) & ENDPOINT_FLAGS.RemoteEndpoint) !== 0) {
      await client.deleteEndpoint(ep.ID);
      removed++;
    }
  }
  return { loadBalancers, endpoints: removed };
}
