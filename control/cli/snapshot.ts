// One-shot desired state for the inspect commands: read the sources once (manifests or the API
// server), feed the model, flush, stop.
import { ChangeTracker } from '../model/tracker.ts';
import type { DesiredState, ModelConfig } from '../model/types.ts';
import { FilesSource } from '../sources/files/source.ts';
import { KubeSource } from '../sources/kube/source.ts';
import { KubeConfigTransport, loadKubeConfig } from '../sources/kube/transport.ts';
import { ModelFeed } from '../sources/model-feed.ts';
import { RejectionLog, type WarnLogger } from '../sources/rejection-log.ts';

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

export async function snapshot(o: SnapshotOptions): Promise<{ state: DesiredState; rejections: RejectionLog }> {
  const tracker = new ChangeTracker(o.config);
  const rejections = new RejectionLog(o.logger);
  const feed = new ModelFeed({ tracker, rejections, nodeName: o.nodeName, hostAddresses: o.hostAddresses });
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
  return { state: tracker.state(), rejections };
}
