// Connects sources to the model: Services, EndpointSlices and ServiceCIDRs into the change
// tracker, the proxy's own Node into node facts, rejections into the rejection log.
import { nodeFacts } from '../model/node.ts';
import type { ChangeTracker } from '../model/tracker.ts';
import type { KindName, KubeObject } from './kube/kinds.ts';
import type { V1Node } from '@kubernetes/client-node';
import type { RejectionLog } from './rejection-log.ts';
import type { Rejection } from '../model/rejections.ts';
import type { ObjectSink } from './sink.ts';

export interface ModelFeedOptions {
  tracker: ChangeTracker;
  rejections: RejectionLog;
  nodeName: string;
  /** Addresses of the host's own interfaces, added to the Node's (NodePorts answer there too). */
  hostAddresses?: readonly string[];
  /** Called after every delivered change (the agent schedules a sync). */
  onChange?: () => void;
  onSynced?: (kind: KindName) => void;
}

export class ModelFeed implements ObjectSink {
  private readonly o: ModelFeedOptions;
  private hostAddresses: readonly string[];
  /** The proxy's own Node as last seen, so host address changes are merged with it. */
  private node: V1Node | undefined;

  constructor(options: ModelFeedOptions) {
    this.o = options;
    this.hostAddresses = options.hostAddresses ?? [];
  }

  /** The host's interface addresses changed (netlink): the node facts are recomputed with them. */
  setHostAddresses(addresses: readonly string[]): void {
    this.hostAddresses = addresses;
    this.o.tracker.setNode(nodeFacts(this.o.nodeName, this.node, this.hostAddresses));
    this.o.onChange?.();
  }

  upsert(kind: KindName, obj: KubeObject): void {
    const name = obj?.metadata?.name;
    const namespace = obj?.metadata?.namespace;
    const identified = typeof name === 'string' && name !== '' && typeof namespace === 'string' && namespace !== '';
    const record = (rejections: Rejection[]): void => {
      if (identified) this.o.rejections.record(`${kind} ${namespace}/${name}`, rejections);
      else this.o.rejections.recordAnonymous(rejections);
    };
    if (kind === 'Service') record(this.o.tracker.upsertService(obj));
    else if (kind === 'EndpointSlice') record(this.o.tracker.upsertSlice(obj));
    else if (kind === 'ServiceCIDR') {
      // Cluster-scoped: identified by its name alone.
      const rejections = this.o.tracker.upsertServiceCIDR(obj);
      if (typeof name === 'string' && name !== '') this.o.rejections.record(`ServiceCIDR ${name}`, rejections);
      else this.o.rejections.recordAnonymous(rejections);
    }
    else if (obj?.metadata?.name === this.o.nodeName) {
      this.node = obj as V1Node;
      this.o.tracker.setNode(nodeFacts(this.o.nodeName, this.node, this.hostAddresses));
    } else return;
    this.o.onChange?.();
  }

  delete(kind: KindName, key: string): void {
    if (kind === 'Service') this.o.tracker.deleteService(key);
    else if (kind === 'EndpointSlice') this.o.tracker.deleteSlice(key);
    else if (kind === 'ServiceCIDR') this.o.tracker.deleteServiceCIDR(key);
    else if (key === this.o.nodeName) {
      this.node = undefined;
      this.o.tracker.setNode(nodeFacts(this.o.nodeName, undefined, this.hostAddresses));
    } else return;
    this.o.rejections.forget(`${kind} ${key}`);
    this.o.onChange?.();
  }

  synced(kind: KindName): void {
    this.o.onSynced?.(kind);
  }

  decodeError(kind: KindName | 'unknown', where: string, detail: string): void {
    this.o.rejections.record(`${kind} ${where}`, [{ object: `${kind} ${where}`, reason: 'decode-error', detail, dropped: 'object' }]);
  }
}
