// One-shot desired state for the inspect commands: read the sources once (manifests or the API
// server), feed the model, flush, stop.
import { nodeFacts } from '../model/node.ts';
import { ChangeTracker } from '../model/tracker.ts';
import type { DesiredState, ModelConfig } from '../model/types.ts';
import { FilesSource } from '../sources/files/source.ts';
import { KubeSource } from '../sources/kube/source.ts';
import { KubeConfigTransport, loadKubeConfig } from '../sources/kube/transport.ts';
import { ModelFeed } from '../sources/model-feed.ts';
import { RejectionLog, type WarnLogger } from '../sources/rejection-log.ts';
import type { KindName, KubeObject } from '../sources/kube/kinds.ts';
import type { ObjectSink } from '../sources/sink.ts';

export interface SnapshotOptions {
  manifests?: string;
  kubeconfig?: string;
  master?: string;
  contentType?: 'protobuf' | 'json';
  nodeName: string;
  hostAddresses?: readonly string[];
  config: ModelConfig;
  logger: WarnLogger;
  timeoutMs?: number;
}

/** What trace explains a verdict with, beyond the model: which Nodes exist, which port names each service's slices carry. */
export interface SnapshotFacts {
  nodes: Set<string>;
  /** "namespace/service" -> port names in its EndpointSlices ("" for an unnamed port). */
  slicePortNames: Map<string, Set<string>>;
}

/** Passes everything on to the model's feed, noting the facts on the way. */
class FactSink implements ObjectSink {
  readonly facts: SnapshotFacts = { nodes: new Set(), slicePortNames: new Map() };
  private readonly next: ObjectSink;

  constructor(next: ObjectSink) {
    this.next = next;
  }

  upsert(kind: KindName, obj: KubeObject): void {
    const meta = obj?.metadata as { name?: unknown; namespace?: unknown; labels?: Record<string, unknown> } | undefined;
    if (kind === 'Node' && typeof meta?.name === 'string') this.facts.nodes.add(meta.name);
    const service = meta?.labels?.['kubernetes.io/service-name'];
    if (kind === 'EndpointSlice' && typeof service === 'string') {
      const key = `${String(meta?.namespace)}/${service}`;
      const names = this.facts.slicePortNames.get(key) ?? new Set<string>();
      for (const p of ((obj as { ports?: unknown }).ports as Array<{ name?: unknown }> | null | undefined) ?? []) names.add(typeof p?.name === 'string' ? p.name : '');
      this.facts.slicePortNames.set(key, names);
    }
    this.next.upsert(kind, obj);
  }

  delete(kind: KindName, key: string): void {
    this.next.delete(kind, key);
  }

  synced(kind: KindName): void {
    this.next.synced(kind);
  }

  decodeError(kind: KindName | 'unknown', where: string, detail: string): void {
    this.next.decodeError(kind, where, detail);
  }
}

export async function snapshot(o: SnapshotOptions): Promise<{ state: DesiredState; rejections: RejectionLog; facts: SnapshotFacts }> {
  const tracker = new ChangeTracker(o.config);
  // The host's addresses count even when no Node object names this node (as the agent does).
  tracker.setNode(nodeFacts(o.nodeName, undefined, o.hostAddresses));
  const rejections = new RejectionLog(o.logger);
  const facts = new FactSink(new ModelFeed({ tracker, rejections, nodeName: o.nodeName, hostAddresses: o.hostAddresses }));
  const feed = facts;
  if (o.manifests !== undefined) {
    const files = new FilesSource({ dir: o.manifests, sink: feed, rescanMs: 0 });
    await files.reload();
  } else {
    const transport = new KubeConfigTransport(loadKubeConfig({ kubeconfig: o.kubeconfig, master: o.master }));
    const source = new KubeSource({ transport, nodeName: o.nodeName, sink: feed, contentType: o.contentType });
    source.start();
    const deadline = Date.now() + (o.timeoutMs ?? 30_000);
    while (!source.synced) {
      if (Date.now() > deadline) {
        await source.stop();
        throw new Error(`the API server at ${transport.server} did not answer within ${o.timeoutMs ?? 30_000} ms`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    await source.stop();
  }
  tracker.flush();
  return { state: tracker.state(), rejections, facts: facts.facts };
}
