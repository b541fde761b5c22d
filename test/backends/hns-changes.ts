// ChangeSets for the HNS tests.
import type { ChangeSet, ServicePortState } from '../../control/model/types.ts';

export const emptyChanges = (upserted: ServicePortState[] = [], removed: ServicePortState[] = []): ChangeSet => ({ upserted, removed, nodeChanged: false, serviceChanges: 0, endpointChanges: 0, lastChangeTriggerTimes: [] });
