// A reference model built straight from objects, for comparing what a source delivered.
import type { V1Node } from '@kubernetes/client-node';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import type { DesiredState, ModelConfig } from '../../control/model/types.ts';

export function referenceState(config: ModelConfig, nodeName: string, services: unknown[], slices: unknown[], node: V1Node | undefined, serviceCIDRs: unknown[] = []): DesiredState {
  const t = new ChangeTracker(config, nodeFacts(nodeName, node));
  for (const s of services) t.upsertService(s);
  for (const s of slices) t.upsertSlice(s);
  for (const c of serviceCIDRs) t.upsertServiceCIDR(c);
  t.flush();
  return t.state();
}

/** A stable text of everything a backend would see, for deep comparison. */
export function stateText(state: DesiredState): string {
  const families = [...state.families.values()].map((f) => ({
    ...f,
    servicePorts: [...f.servicePorts.values()].sort((a, b) => (a.key < b.key ? -1 : 1)),
  }));
  return JSON.stringify({ node: state.node, families, serviceCIDRSource: state.serviceCIDRSource });
}
