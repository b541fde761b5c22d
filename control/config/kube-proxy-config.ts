// kube-proxy's configuration file (kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration), read
// strictly as kube-proxy does: an unknown or mistyped field is an error that names it. Defaults
// are kube-proxy's. Switchyard's own settings live in a second document of our own kind
// (switchyard.io/v1alpha1 SwitchyardConfiguration), never inside kube-proxy's. Pure.
import { parseAllDocuments, stringify } from 'yaml';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type FieldType = 'string' | 'int' | 'bool' | 'duration' | 'stringList' | 'stringMap' | 'boolMap' | { object: Schema };
type Schema = Record<string, FieldType>;

const KUBE_PROXY_SCHEMA: Schema = {
  apiVersion: 'string',
  kind: 'string',
  featureGates: 'boolMap',
  clientConnection: { object: { kubeconfig: 'string', acceptContentTypes: 'string', contentType: 'string', qps: 'int', burst: 'int' } },
  logging: { object: { format: 'string', flushFrequency: 'duration', verbosity: 'int', vmodule: 'stringList', options: { object: { text: { object: { infoBufferSize: 'string', splitStream: 'bool' } }, json: { object: { infoBufferSize: 'string', splitStream: 'bool' } } } } } },
  hostnameOverride: 'string',
  bindAddress: 'string',
  healthzBindAddress: 'string',
  metricsBindAddress: 'string',
  bindAddressHardFail: 'bool',
  enableProfiling: 'bool',
  showHiddenMetricsForVersion: 'string',
  mode: 'string',
  iptables: { object: { masqueradeBit: 'int', masqueradeAll: 'bool', localhostNodePorts: 'bool', syncPeriod: 'duration', minSyncPeriod: 'duration' } },
  ipvs: { object: { syncPeriod: 'duration', minSyncPeriod: 'duration', scheduler: 'string', excludeCIDRs: 'stringList', strictARP: 'bool', tcpTimeout: 'duration', tcpFinTimeout: 'duration', udpTimeout: 'duration' } },
  nftables: { object: { masqueradeBit: 'int', masqueradeAll: 'bool', syncPeriod: 'duration', minSyncPeriod: 'duration' } },
  winkernel: { object: { networkName: 'string', sourceVip: 'string', enableDSR: 'bool', rootHnsEndpointName: 'string', forwardHealthCheckVip: 'bool' } },
  detectLocalMode: 'string',
  detectLocal: { object: { bridgeInterface: 'string', interfaceNamePrefix: 'string', clusterCIDRs: 'stringList' } },
  clusterCIDR: 'string',
  nodePortAddresses: 'stringList',
  oomScoreAdj: 'int',
  conntrack: { object: { maxPerCore: 'int', min: 'int', tcpEstablishedTimeout: 'duration', tcpCloseWaitTimeout: 'duration', tcpBeLiberal: 'bool', udpTimeout: 'duration', udpStreamTimeout: 'duration' } },
  configSyncPeriod: 'duration',
  portRange: 'string',
  syncPeriod: 'duration',
  minSyncPeriod: 'duration',
};

const SWITCHYARD_SCHEMA: Schema = {
  apiVersion: 'string',
  kind: 'string',
  bpffsDir: 'string',
  podDevicePrefixes: 'stringList',
  externalDevices: 'stringList',
  cgroupRoot: 'string',
  loadBalancing: { object: { algorithm: 'string' } },
  socketLB: 'bool',
  xdpMode: 'string',
  mapSizes: { object: { frontends: 'int', backends: 'int', slots: 'int', conntrack: 'int', affinity: 'int', sourceRanges: 'int', fragments: 'int' } },
  apiServerViaClusterIP: 'bool',
  /** SNAT source ports ("MIN-MAX") when a client's own port is taken: masquerade, hairpin, NAT clashes. */
  snatPorts: 'string',
  /** The cluster's service CIDRs (the API server's --service-cluster-ip-range), used while the API server has no ServiceCIDR objects: traffic to unallocated ClusterIPs in them is dropped (nftables and eBPF mode, as kube-proxy's nftables mode). */
  serviceCIDRs: 'stringList',
};

/** Every leaf field of KubeProxyConfiguration (v1alpha1) as a dotted path, with its type: what the field-use table and its test walk. */
export function kubeProxyFields(): Array<{ path: string; type: Exclude<FieldType, { object: Schema }> }> {
  const out: Array<{ path: string; type: Exclude<FieldType, { object: Schema }> }> = [];
  const walk = (schema: Schema, prefix: string): void => {
    for (const [k, t] of Object.entries(schema)) {
      const path = prefix === '' ? k : `${prefix}.${k}`;
      if (typeof t === 'object') walk(t.object, path);
      else out.push({ path, type: t });
    }
  };
  walk(KUBE_PROXY_SCHEMA, '');
  return out;
}

export const KUBE_PROXY_API_VERSION = 'kubeproxy.config.k8s.io/v1alpha1';
export const SWITCHYARD_API_VERSION = 'switchyard.io/v1alpha1';

/** kube-proxy's defaults (SetDefaults_KubeProxyConfiguration), as --write-config-to prints them. */
export function defaultKubeProxyConfiguration(): Record<string, unknown> {
  return {
    apiVersion: KUBE_PROXY_API_VERSION,
    kind: 'KubeProxyConfiguration',
    bindAddress: '0.0.0.0',
    bindAddressHardFail: false,
    clientConnection: { acceptContentTypes: '', burst: 10, contentType: 'application/vnd.kubernetes.protobuf', kubeconfig: '', qps: 5 },
    clusterCIDR: '',
    configSyncPeriod: '15m0s',
    conntrack: { maxPerCore: 32768, min: 131072, tcpBeLiberal: false, tcpCloseWaitTimeout: '1h0m0s', tcpEstablishedTimeout: '24h0m0s', udpStreamTimeout: '0s', udpTimeout: '0s' },
    detectLocal: { bridgeInterface: '', interfaceNamePrefix: '' },
    detectLocalMode: '',
    enableProfiling: false,
    healthzBindAddress: '0.0.0.0:10256',
    hostnameOverride: '',
    iptables: { localhostNodePorts: true, masqueradeAll: false, masqueradeBit: 14, minSyncPeriod: '1s', syncPeriod: '30s' },
    ipvs: { excludeCIDRs: null, minSyncPeriod: '0s', scheduler: '', strictARP: false, syncPeriod: '30s', tcpFinTimeout: '0s', tcpTimeout: '0s', udpTimeout: '0s' },
    logging: { flushFrequency: '5s', format: 'text', options: { json: { infoBufferSize: '0' }, text: { infoBufferSize: '0' } }, verbosity: 0 },
    metricsBindAddress: '127.0.0.1:10249',
    mode: '',
    nftables: { masqueradeAll: false, masqueradeBit: 14, minSyncPeriod: '1s', syncPeriod: '30s' },
    nodePortAddresses: null,
    oomScoreAdj: -999,
    portRange: '',
    showHiddenMetricsForVersion: '',
    winkernel: { enableDSR: false, forwardHealthCheckVip: false, networkName: '', rootHnsEndpointName: '', sourceVip: '' },
  };
}

export function defaultSwitchyardConfiguration(): Record<string, unknown> {
  return {
    apiVersion: SWITCHYARD_API_VERSION,
    kind: 'SwitchyardConfiguration',
    bpffsDir: '/sys/fs/bpf/switchyard',
    podDevicePrefixes: ['veth'],
    externalDevices: [],
    loadBalancing: { algorithm: 'random' },
    socketLB: true,
    xdpMode: 'auto',
    snatPorts: '1024-65535',
  };
}

const DURATION = /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$|^0$/;

function check(value: unknown, type: FieldType, path: string): void {
  const fail = (want: string): never => {
    throw new ConfigError(`${path}: want ${want}, got ${JSON.stringify(value)}`);
  };
  if (value === null) return; // kube-proxy's decoder takes null for any field
  if (typeof type === 'object') {
    if (typeof value !== 'object' || Array.isArray(value)) fail('an object');
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      const sub = type.object[k];
      if (sub === undefined) throw new ConfigError(`unknown field "${path === '' ? k : `${path}.${k}`}"`);
      check(v, sub, path === '' ? k : `${path}.${k}`);
    }
    return;
  }
  switch (type) {
    case 'string':
      if (typeof value !== 'string') fail('a string');
      return;
    case 'int':
      if (typeof value !== 'number' || !Number.isInteger(value)) fail('an integer');
      return;
    case 'bool':
      if (typeof value !== 'boolean') fail('true or false');
      return;
    case 'duration':
      if (typeof value !== 'string' || !DURATION.test(value)) fail('a duration such as 30s or 1m0s');
      return;
    case 'stringList':
      if (!Array.isArray(value) || value.some((x) => typeof x !== 'string')) fail('a list of strings');
      return;
    case 'stringMap':
    case 'boolMap': {
      if (typeof value !== 'object' || Array.isArray(value)) fail('a map');
      const want = type === 'boolMap' ? 'boolean' : 'string';
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) if (typeof v !== want) throw new ConfigError(`${path}.${k}: want a ${want}, got ${JSON.stringify(v)}`);
    }
  }
}

function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = base[k];
    out[k] = v !== null && typeof v === 'object' && !Array.isArray(v) && b !== null && typeof b === 'object' && !Array.isArray(b) ? merge(b as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

export interface LoadedConfiguration {
  kubeProxy: Record<string, unknown>;
  switchyard: Record<string, unknown>;
}

/** Decodes a --config file: a KubeProxyConfiguration, optionally followed by a SwitchyardConfiguration. */
export function decodeConfiguration(text: string): LoadedConfiguration {
  const docs = parseAllDocuments(text);
  let kubeProxy: Record<string, unknown> | undefined;
  let switchyard: Record<string, unknown> | undefined;
  docs.forEach((doc, i) => {
    if (doc.errors.length > 0) throw new ConfigError(`document ${i + 1}: ${doc.errors[0]!.message}`);
    const value = doc.toJS() as unknown;
    if (value === null || value === undefined) return;
    if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`document ${i + 1}: not an object`);
    const obj = value as Record<string, unknown>;
    if (obj.kind === 'KubeProxyConfiguration') {
      if (obj.apiVersion !== KUBE_PROXY_API_VERSION) throw new ConfigError(`apiVersion: want ${KUBE_PROXY_API_VERSION}, got ${JSON.stringify(obj.apiVersion)}`);
      check(obj, { object: KUBE_PROXY_SCHEMA }, '');
      kubeProxy = merge(defaultKubeProxyConfiguration(), obj);
    } else if (obj.kind === 'SwitchyardConfiguration') {
      if (obj.apiVersion !== SWITCHYARD_API_VERSION) throw new ConfigError(`apiVersion: want ${SWITCHYARD_API_VERSION}, got ${JSON.stringify(obj.apiVersion)}`);
      check(obj, { object: SWITCHYARD_SCHEMA }, '');
      switchyard = merge(defaultSwitchyardConfiguration(), obj);
    } else {
      throw new ConfigError(`document ${i + 1}: kind ${JSON.stringify(obj.kind)} is neither KubeProxyConfiguration nor SwitchyardConfiguration`);
    }
  });
  if (kubeProxy === undefined) throw new ConfigError('no KubeProxyConfiguration in the file');
  return { kubeProxy, switchyard: switchyard ?? defaultSwitchyardConfiguration() };
}

/** What --write-config-to writes: both documents, every default spelled out. */
export function encodeConfiguration(c: LoadedConfiguration): string {
  return `${stringify(c.kubeProxy)}---\n${stringify(c.switchyard)}`;
}
