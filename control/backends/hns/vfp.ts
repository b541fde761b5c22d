// What VFP does to a packet's source address under an HCN load balancer, as kube-proxy's
// winkernel proxier relies on it: Direct Server Return keeps the client's address; a load
// balancer for an external frontend (NodePort, external IP, LB IP: the VipExternalIP flag) is
// source-NATed to its SourceVIP; a cluster IP keeps the address of a pod on this node, while the
// host's own traffic leaves from the SourceVIP. The compiler reads this to know which plan
// decisions HCN can honour; the in-memory evaluator in the tests reads it too. It is the one
// assumption about VFP here that has not been checked on a Windows node (see the README).
import type { SourceClass } from '../../model/plan.ts';
import { LB_FLAGS, PORT_MAPPING_FLAGS } from './hcn-types.ts';

export function vfpKeepsClientAddress(flags: number, portFlags: number, source: SourceClass): boolean {
  if ((flags & LB_FLAGS.DSR) !== 0) return true;
  if ((portFlags & PORT_MAPPING_FLAGS.VipExternalIP) !== 0) return false;
  return source === 'local-pod';
}
