// What every source (API server, manifest files) delivers into: objects by kind.
import type { KindName, KubeObject } from './kube/kinds.ts';

export interface ObjectSink {
  upsert(kind: KindName, obj: KubeObject): void;
  delete(kind: KindName, key: string): void;
  /** The source delivered its first complete view of this kind. */
  synced(kind: KindName): void;
  /** Bytes or text that could not be decoded into an object at all. */
  decodeError(kind: KindName | 'unknown', where: string, detail: string): void;
}
