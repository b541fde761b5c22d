// A small VFP-like evaluator over the in-memory HCN: which load balancer a packet hits (a
// frontend VIP first, then a NodePort load balancer without VIPs on any host address), the
// endpoints it can go to, and whether the backend sees the client's address. The semantic test
// compares its answer with trace's for every case of the table.
import { PORT_MAPPING_FLAGS, PROTOCOL_NUMBER, LB_FLAGS } from '../../control/backends/hns/hcn-types.ts';
import { vfpKeepsClientAddress } from '../../control/backends/hns/vfp.ts';
import { familyOf } from '../../control/model/ip.ts';
import type { SourceClass } from '../../control/model/plan.ts';
import type { FakeHcn } from './hns-fake-hcn.ts';

export interface VfpPacket {
  src: string;
  dst: string;
  port: number;
  protocol: 'TCP' | 'UDP';
}

export type VfpResult =
  | { verdict: 'UNTOUCHED' }
  | { verdict: 'LOAD_BALANCED'; loadBalancer: string; endpoints: Array<{ ip: string; port: number; sourceTranslated: boolean }> };

export function vfpEvaluate(hcn: FakeHcn, hostAddresses: ReadonlySet<string>, packet: VfpPacket, source: SourceClass): VfpResult {
  const v6 = familyOf(packet.dst) === 6;
  const candidates = [...hcn.loadBalancers.values()].filter((lb) => {
    const pm = lb.PortMappings[0]!;
    return pm.Protocol === PROTOCOL_NUMBER[packet.protocol] && pm.ExternalPort === packet.port && ((lb.Flags ?? 0) & LB_FLAGS.IPv6) !== 0 === v6;
  });
  const lb =
    candidates.find((l) => (l.FrontendVIPs ?? []).includes(packet.dst)) ??
    candidates.find((l) => (l.FrontendVIPs ?? []).length === 0 && ((l.PortMappings[0]!.Flags ?? 0) & PORT_MAPPING_FLAGS.LocalRoutedVIP) !== 0 && hostAddresses.has(packet.dst));
  if (lb === undefined) return { verdict: 'UNTOUCHED' };
  const pm = lb.PortMappings[0]!;
  const keep = vfpKeepsClientAddress(lb.Flags ?? 0, pm.Flags ?? 0, source);
  const endpoints = (lb.HostComputeEndpoints ?? []).map((id) => {
    const ep = hcn.endpoints.get(id.toLowerCase());
    if (ep === undefined) throw new Error(`load balancer ${lb.ID} points at missing endpoint ${id}`);
    const ip = ep.IpConfigurations.map((c) => c.IpAddress).find((a) => (familyOf(a) === 6) === v6)!;
    // A pod reaching itself through its service: VFP hairpins it through the SourceVIP.
    return { ip, port: pm.InternalPort, sourceTranslated: !keep || ip === packet.src };
  });
  return { verdict: 'LOAD_BALANCED', loadBalancer: lb.ID!, endpoints };
}
