// Standalone mode: Services, EndpointSlices, Nodes and ServiceCIDRs from a directory of YAML/JSON manifests
// (multi-document YAML and List objects too), watched for changes. Each reload diffs against
// the last one, so the sink sees upserts and deletes exactly as from the API server.
import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { CLUSTER_SCOPED, objectKey, SOURCE_KINDS, type KindName, type KubeObject } from '../kube/kinds.ts';
import type { ObjectSink } from '../sink.ts';

const KIND_NAMES = new Set<string>(SOURCE_KINDS);
const MANIFEST = /\.(ya?ml|json)$/i;

export interface FilesSourceOptions {
  dir: string;
  sink: ObjectSink;
  /** Debounce for bursts of file events. */
  debounceMs?: number;
  /** A rescan this often catches changes the file watcher missed (0: never). */
  rescanMs?: number;
}

interface Loaded {
  objects: Map<KindName, Map<string, { obj: KubeObject; text: string }>>;
  errors: Array<{ where: string; detail: string }>;
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory() && !entry.name.startsWith('.')) out.push(...(await listFiles(path)));
    else if (entry.isFile() && MANIFEST.test(entry.name) && !entry.name.startsWith('.')) out.push(path);
  }
  return out.sort();
}

/** Reads every manifest under `dir`; unreadable documents become errors, never exceptions. */
export async function loadManifests(dir: string): Promise<Loaded> {
  const objects: Loaded['objects'] = new Map([...KIND_NAMES].map((k) => [k as KindName, new Map()]));
  const errors: Loaded['errors'] = [];
  const add = (doc: unknown, where: string): void => {
    if (doc === null || doc === undefined) return;
    if (typeof doc !== 'object' || Array.isArray(doc)) return void errors.push({ where, detail: 'not an object' });
    const d = doc as { kind?: unknown; items?: unknown; metadata?: { namespace?: unknown } };
    if (typeof d.kind === 'string' && d.kind.endsWith('List') && Array.isArray(d.items)) {
      d.items.forEach((item, i) => add(item, `${where} items[${i}]`));
      return;
    }
    if (typeof d.kind !== 'string' || !KIND_NAMES.has(d.kind)) return; // other kinds are not ours
    const kind = d.kind as KindName;
    // What the API server would do: namespaced objects without a namespace go to "default".
    if (!CLUSTER_SCOPED.has(kind) && d.metadata !== null && typeof d.metadata === 'object' && d.metadata.namespace === undefined) d.metadata.namespace = 'default';
    const obj = doc as KubeObject;
    objects.get(kind)!.set(objectKey(obj), { obj, text: JSON.stringify(obj) });
  };
  for (const file of await listFiles(dir)) {
    const where = relative(dir, file);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      errors.push({ where, detail: (e as Error).message });
      continue;
    }
    if (/\.json$/i.test(file)) {
      try {
        add(JSON.parse(text), where);
      } catch (e) {
        errors.push({ where, detail: `JSON: ${(e as Error).message}` });
      }
      continue;
    }
    parseAllDocuments(text).forEach((doc, i) => {
      const docWhere = `${where}#${i}`;
      if (doc.errors.length > 0) errors.push({ where: docWhere, detail: `YAML: ${doc.errors[0]!.message}` });
      else add(doc.toJS(), docWhere);
    });
  }
  return { objects, errors };
}

export class FilesSource {
  private readonly o: Required<FilesSourceOptions>;
  private current: Loaded['objects'] = new Map();
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private rescan: NodeJS.Timeout | undefined;
  private reloading: Promise<void> = Promise.resolve();
  private first = true;
  reloads = 0;

  constructor(options: FilesSourceOptions) {
    this.o = { debounceMs: 100, rescanMs: 30_000, ...options };
  }

  async start(): Promise<void> {
    await this.reload();
    this.watcher = watch(this.o.dir, { recursive: true }, () => this.schedule());
    // The directory can vanish or become unreadable; the last good state stays programmed.
    this.watcher.on('error', (e) => this.o.sink.decodeError('unknown', this.o.dir, `watch: ${e.message}`));
    if (this.o.rescanMs > 0) this.rescan = setInterval(() => this.schedule(), this.o.rescanMs);
  }

  stop(): Promise<void> {
    this.watcher?.close();
    clearTimeout(this.timer);
    clearInterval(this.rescan);
    return this.reloading;
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.reloading = this.reloading.then(() =>
        this.reload().catch((e: Error) => {
          // Keep what is programmed; report why the directory could not be read.
          this.o.sink.decodeError('unknown', this.o.dir, e.message);
        }),
      );
    }, this.o.debounceMs);
  }

  /** Reads the directory again and delivers the difference. */
  async reload(): Promise<void> {
    const loaded = await loadManifests(this.o.dir);
    this.reloads++;
    for (const e of loaded.errors) this.o.sink.decodeError('unknown', e.where, e.detail);
    for (const [kind, next] of loaded.objects) {
      const prev = this.current.get(kind) ?? new Map();
      for (const [key] of prev) if (!next.has(key)) this.o.sink.delete(kind, key);
      for (const [key, item] of next) if (prev.get(key)?.text !== item.text) this.o.sink.upsert(kind, item.obj);
    }
    this.current = loaded.objects;
    if (this.first) {
      this.first = false;
      for (const kind of KIND_NAMES) this.o.sink.synced(kind as KindName);
    }
  }
}
