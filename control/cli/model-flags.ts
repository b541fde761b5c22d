// kube-proxy's flags that shape the model, parsed into a ModelConfig.
import type { Family } from '../model/ip.ts';
import { parseCidr } from '../model/ip.ts';
import { DEFAULT_MODEL_CONFIG, type DetectLocalMode, type ModelConfig } from '../model/types.ts';

export interface ModelFlagValues {
  'cluster-cidr'?: string;
  'detect-local-mode'?: string;
  'pod-bridge-interface'?: string;
  'pod-interface-name-prefix'?: string;
  'nodeport-addresses'?: string;
  'masquerade-all'?: boolean;
  'ip-families'?: string;
}

const MODES: readonly DetectLocalMode[] = ['ClusterCIDR', 'NodeCIDR', 'BridgeInterface', 'InterfaceNamePrefix', 'None'];

function list(value: string | undefined): string[] {
  return (value ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
}

/** Throws an Error naming the flag for any value kube-proxy would refuse. */
export function modelConfigFromFlags(v: ModelFlagValues): ModelConfig {
  const clusterCIDRs = list(v['cluster-cidr']);
  for (const c of clusterCIDRs) if (parseCidr(c) === undefined) throw new Error(`--cluster-cidr: "${c}" is not a CIDR`);
  const nodePortAddresses = list(v['nodeport-addresses']);
  if (!(nodePortAddresses.length === 1 && nodePortAddresses[0] === 'primary')) {
    for (const c of nodePortAddresses) if (parseCidr(c) === undefined) throw new Error(`--nodeport-addresses: "${c}" is not a CIDR (or "primary")`);
  }
  // kube-proxy's default: ClusterCIDR when a cluster CIDR is given, else no detection.
  const mode = (v['detect-local-mode'] ?? (clusterCIDRs.length > 0 ? 'ClusterCIDR' : 'None')) as DetectLocalMode;
  if (!MODES.includes(mode)) throw new Error(`--detect-local-mode: "${mode}" is not one of ${MODES.join(', ')}`);
  const families = list(v['ip-families'] ?? '4,6').map((f) => Number(f.replace(/^ipv/i, '')));
  if (families.some((f) => f !== 4 && f !== 6)) throw new Error(`--ip-families: use 4, 6 or 4,6`);
  return {
    ...DEFAULT_MODEL_CONFIG,
    families: families as Family[],
    clusterCIDRs,
    detectLocalMode: mode,
    bridgeInterface: v['pod-bridge-interface'] ?? '',
    interfaceNamePrefix: v['pod-interface-name-prefix'] ?? '',
    nodePortAddresses,
    masqueradeAll: v['masquerade-all'] ?? false,
  };
}
