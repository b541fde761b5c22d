// Reaching the API server on a node where nothing is programmed yet. The in-cluster config's
// server is KUBERNETES_SERVICE_HOST, the ClusterIP of the `kubernetes` Service, which only a
// service proxy makes reachable: the one starting here, on a fresh or rebooted node. kube-proxy
// avoids that circle with a kubeconfig holding the API server's real address (kubeadm ships it
// in kube-proxy's ConfigMap); so does Switchyard (deploy/configmap.yaml), and it refuses at start,
// saying what to set, to wait forever on a ClusterIP nobody serves. Someone who knows the
// ClusterIP works on this node without the agent (kube-proxy still running during a migration)
// says so with apiServerViaClusterIP.
import { readFileSync } from 'node:fs';
import type { KubeConfig, User } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { canonicalIp, cidrContains, parseCidr } from '../../model/ip.ts';
import { loadKubeConfig, type KubeConfigOptions } from './transport.ts';

export class BootstrapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BootstrapError';
  }
}

/** The server deploy/configmap.yaml's kubeconfig.conf ships with: a reserved name (RFC 2606) to replace. */
export const PLACEHOLDER_HOST = 'api-server.invalid';

export interface ApiServerFacts {
  /** The KUBERNETES_SERVICE_HOST the kubelet gives every pod: the kubernetes Service's ClusterIP. */
  kubernetesServiceHost: string | undefined;
  /** --service-cluster-ip-range, where known. */
  serviceCIDRs: readonly string[];
  /** apiServerViaClusterIP: the operator says the ClusterIP is served on this node without us. */
  viaClusterIP: boolean;
}

const WHAT_TO_SET =
  "Set the API server's real address: clientConnection.kubeconfig naming a kubeconfig whose server is it " +
  '(deploy/configmap.yaml ships kubeconfig.conf for this, as kubeadm does for kube-proxy; put your control-plane endpoint there), ' +
  'or --master https://HOST:PORT. Only if something else serves the ClusterIP on this node (kube-proxy during a migration) ' +
  'set apiServerViaClusterIP: true in the SwitchyardConfiguration.';

/** Pure: why `server` cannot bootstrap this node, or undefined when it can. */
export function apiServerProblem(server: string, facts: ApiServerFacts): string | undefined {
  let host: string;
  try {
    host = new URL(server).hostname.replace(/^\[(.*)\]$/, '$1');
  } catch {
    return `the API server address ${JSON.stringify(server)} is not a URL. ${WHAT_TO_SET}`;
  }
  if (host === PLACEHOLDER_HOST) return `the kubeconfig's server is still the placeholder ${server}. ${WHAT_TO_SET}`;
  if (facts.viaClusterIP) return undefined;
  const ip = canonicalIp(host);
  const reasons: string[] = [];
  if (ip !== undefined && facts.kubernetesServiceHost !== undefined && ip === canonicalIp(facts.kubernetesServiceHost)) {
    reasons.push("it is KUBERNETES_SERVICE_HOST, the kubernetes Service's ClusterIP");
  }
  for (const text of facts.serviceCIDRs) {
    const cidr = parseCidr(text);
    if (ip !== undefined && cidr !== undefined && cidrContains(cidr, ip)) reasons.push(`it lies in the service range ${text}`);
  }
  if (reasons.length === 0) return undefined;
  return `the API server address ${server} is a ClusterIP (${reasons.join('; ')}), which only a service proxy programs: on a node with no state yet this agent would wait for itself forever. ${WHAT_TO_SET}`;
}

/**
 * kubeadm's kube-proxy kubeconfig names the service account token with `tokenFile` (client-go's
 * field), which client-node's loader drops. It becomes client-node's tokenFile auth provider, which
 * re-reads the file (the kubelet rotates projected tokens).
 */
function honourTokenFiles(kc: KubeConfig, path: string): void {
  const raw = parse(readFileSync(path, 'utf8')) as { users?: Array<{ name?: string; user?: { tokenFile?: string; 'token-file'?: string } }> } | null;
  const files = new Map<string, string>();
  for (const u of raw?.users ?? []) {
    const file = u.user?.tokenFile ?? u.user?.['token-file'];
    if (u.name !== undefined && file !== undefined) files.set(u.name, file);
  }
  if (files.size === 0) return;
  const users: User[] = kc.users.map((u) => {
    const file = files.get(u.name);
    return file === undefined || u.authProvider !== undefined ? u : { ...u, token: undefined, authProvider: { name: 'tokenFile', config: { tokenFile: file } } };
  });
  kc.loadFromOptions({ clusters: kc.clusters, users, contexts: kc.contexts, currentContext: kc.currentContext });
}

/** The agent's KubeConfig: loaded as kube-proxy loads it, refused when it cannot bootstrap the node. */
export function agentKubeConfig(options: KubeConfigOptions & { viaClusterIP?: boolean; serviceCIDRs?: readonly string[] }, env: NodeJS.ProcessEnv = process.env): KubeConfig {
  let kc: KubeConfig;
  try {
    kc = loadKubeConfig(options);
  } catch (e) {
    throw new BootstrapError(`no way to the API server: ${(e as Error).message}. ${WHAT_TO_SET}`);
  }
  if (options.kubeconfig !== undefined && options.kubeconfig !== '') honourTokenFiles(kc, options.kubeconfig);
  const server = kc.getCurrentCluster()?.server;
  if (server === undefined) throw new BootstrapError(`the kubeconfig has no current cluster. ${WHAT_TO_SET}`);
  const problem = apiServerProblem(server, { kubernetesServiceHost: env.KUBERNETES_SERVICE_HOST, serviceCIDRs: options.serviceCIDRs ?? [], viaClusterIP: options.viaClusterIP ?? false });
  if (problem !== undefined) throw new BootstrapError(problem);
  return kc;
}
