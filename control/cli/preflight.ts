// What the agent checks before it touches the kernel: that it has a source at all, and that the
// source is well-formed (the manifests directory exists, the kubeconfig reads and names a
// server). Reaching the API server is left to the reflector, which retries with backoff.
import { statSync } from 'node:fs';
import { createServer } from 'node:net';
import { splitAddress } from '../server/servers.ts';
import type { SourceOptions } from '../agent/agent.ts';
import { loadKubeConfig } from '../sources/kube/transport.ts';

export class NoSourceError extends Error {
  constructor() {
    super('no source: give --kubeconfig, --master or --manifests (or run in a pod, where the in-cluster configuration is used)');
    this.name = 'NoSourceError';
  }
}

export interface SourceFlags {
  manifests?: string;
  kubeconfig?: string;
  master?: string;
  contentType: 'protobuf' | 'json';
  qps: number;
  burst: number;
}

/** In a pod: what client-go's InClusterConfig needs. */
function inCluster(env: NodeJS.ProcessEnv): boolean {
  return env.KUBERNETES_SERVICE_HOST !== undefined && env.KUBERNETES_SERVICE_HOST !== '' && env.KUBERNETES_SERVICE_PORT !== undefined;
}

/** The agent's source, checked; throws NoSourceError (usage) or an Error naming the problem. */
export function resolveSource(f: SourceFlags, env: NodeJS.ProcessEnv = process.env): SourceOptions {
  if (f.manifests !== undefined && f.manifests !== '') {
    let isDir: boolean;
    try {
      isDir = statSync(f.manifests).isDirectory();
    } catch (e) {
      throw new Error(`--manifests ${f.manifests}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (e as Error).message}`);
    }
    if (!isDir) throw new Error(`--manifests ${f.manifests}: not a directory`);
    return { kind: 'files', dir: f.manifests };
  }
  const kubeconfig = f.kubeconfig === '' ? undefined : f.kubeconfig;
  const master = f.master === '' ? undefined : f.master;
  // As kube-proxy: no kubeconfig and no master means the in-cluster configuration, and nothing
  // else (never ~/.kube/config or localhost:8080).
  if (kubeconfig === undefined && master === undefined && !inCluster(env)) throw new NoSourceError();
  let server: string | undefined;
  try {
    server = loadKubeConfig({ kubeconfig, master }).getCurrentCluster()?.server;
  } catch (e) {
    throw new Error(`${kubeconfig === undefined ? 'the in-cluster configuration' : `--kubeconfig ${kubeconfig}`}: ${(e as Error).message.split('\n')[0]}`);
  }
  if (server === undefined || server === '') throw new Error(`--kubeconfig ${kubeconfig ?? '(in-cluster)'}: its current context names no cluster with a server`);
  if (!/^https?:\/\//.test(server)) throw new Error(`the API server "${server}" is not an http:// or https:// URL`);
  return { kind: 'kube', kubeconfig, master, contentType: f.contentType, qps: f.qps, burst: f.burst };
}

/**
 * Whether a server address can be bound, tried (and let go) before the kernel is probed; the
 * agent binds it for real before it programs anything. Resolves to the error's code, or undefined.
 */
export function bindProblem(address: string): Promise<string | undefined> {
  const { host, port } = splitAddress(address);
  if (port === 0) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(undefined)));
  });
}
