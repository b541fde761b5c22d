// Validation of Services and EndpointSlices as they arrive (from the API or from files, or
// garbage): every field the model reads is type-checked, API defaults are applied, and each
// problem becomes a Rejection naming the object, the field and whether the whole object or only
// that part was dropped. Never throws. Pure.
import { canonicalIp, familyOf, parseCidr, type Cidr, type Family } from './ip.ts';
import type { Rejection, RejectionReason } from './rejections.ts';
import type { LbAlgorithm, Protocol } from './types.ts';

/** Annotation choosing the load-balancing algorithm of one service ("random" or "maglev"). */
export const ALGORITHM_ANNOTATION = 'switchyard.io/lb-algorithm';
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
export const DEFAULT_AFFINITY_TIMEOUT = 10800;
const MAX_AFFINITY_TIMEOUT = 86400;

export interface ValidPort {
  name: string;
  protocol: Protocol;
  port: number;
  nodePort: number;
}

export interface ServiceInfo {
  namespace: string;
  name: string;
  type: 'ClusterIP' | 'NodePort' | 'LoadBalancer';
  clusterIPs: Partial<Record<Family, string>>;
  ports: ValidPort[];
  externalIPs: string[];
  lbIngress: Array<{ ip: string; vip: boolean }>;
  sourceRanges: Cidr[];
  affinityTimeoutSeconds: number;
  externalTrafficPolicyLocal: boolean;
  internalTrafficPolicyLocal: boolean;
  healthCheckNodePort: number;
  algorithm: LbAlgorithm | undefined;
}

export interface SliceEndpoint {
  ip: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  nodeName: string;
  zone: string;
  zoneHints: string[];
  nodeHints: string[];
}

export interface SliceInfo {
  namespace: string;
  name: string;
  /** "ns/service" from the kubernetes.io/service-name label. */
  serviceKey: string;
  family: Family;
  ports: Array<{ name: string; protocol: Protocol; port: number }>;
  endpoints: SliceEndpoint[];
}

export type ServiceVerdict =
  | { service: ServiceInfo; rejections: Rejection[] }
  | { skipped: 'headless' | 'ExternalName'; rejections: Rejection[] }
  | { rejected: true; rejections: Rejection[] };

export type SliceVerdict =
  | { slice: SliceInfo; rejections: Rejection[] }
  | { skipped: 'FQDN'; rejections: Rejection[] }
  | { rejected: true; rejections: Rejection[] };

type Rec = Record<string, unknown>;

function isRecord(v: unknown): v is Rec {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Collects rejections for one object. */
class Problems {
  readonly list: Rejection[] = [];
  readonly object: string;

  constructor(object: string) {
    this.object = object;
  }

  part(reason: RejectionReason, detail: string): void {
    this.list.push({ object: this.object, reason, detail, dropped: 'part' });
  }

  whole(reason: RejectionReason, detail: string): { rejected: true; rejections: Rejection[] } {
    this.list.push({ object: this.object, reason, detail, dropped: 'object' });
    return { rejected: true, rejections: this.list };
  }
}

function show(v: unknown): string {
  try {
    const text = JSON.stringify(v);
    return text === undefined ? String(v) : text.length > 80 ? `${text.slice(0, 77)}...` : text;
  } catch {
    return String(v);
  }
}

/** Reads metadata.name/namespace; undefined (with a rejection) when unusable. */
function identity(kind: string, obj: unknown): { ns: string; name: string; meta: Rec; problems: Problems } | { rejected: true; rejections: Rejection[] } {
  if (!isRecord(obj)) return new Problems(`${kind} ?`).whole('malformed', `not an object: ${show(obj)}`);
  const meta = obj.metadata;
  if (!isRecord(meta)) return new Problems(`${kind} ?`).whole('missing-field', 'metadata');
  const name = meta.name;
  const ns = meta.namespace;
  if (typeof name !== 'string' || name === '') return new Problems(`${kind} ${typeof ns === 'string' ? ns : '?'}/?`).whole('missing-field', 'metadata.name');
  if (typeof ns !== 'string' || ns === '') return new Problems(`${kind} ?/${name}`).whole('missing-field', 'metadata.namespace');
  return { ns, name, meta, problems: new Problems(`${kind} ${ns}/${name}`) };
}

function protocolOf(value: unknown, problems: Problems, where: string): Protocol | undefined {
  if (value === undefined || value === null || value === '') return 'TCP';
  if (value === 'TCP' || value === 'UDP' || value === 'SCTP') return value;
  problems.part('unknown-protocol', `${where}.protocol ${show(value)}`);
  return undefined;
}

function isPort(v: unknown, allowZero: boolean): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v <= 65535 && (allowZero ? v >= 0 : v >= 1);
}

/** Reads one entry of a ports list: a record with an optional string name, a protocol and a port. */
function readPort(p: unknown, where: string, problems: Problems): { name: string; protocol: Protocol; port: number; raw: Rec } | undefined {
  if (!isRecord(p)) {
    problems.part('malformed', `${where} ${show(p)}`);
    return undefined;
  }
  const name = p.name === undefined || p.name === null ? '' : p.name;
  if (typeof name !== 'string') {
    problems.part('invalid-field', `${where}.name ${show(name)}`);
    return undefined;
  }
  const protocol = protocolOf(p.protocol, problems, where);
  if (protocol === undefined) return undefined;
  if (!isPort(p.port, false)) {
    problems.part('port-out-of-range', `${where}.port ${show(p.port)}`);
    return undefined;
  }
  return { name, protocol, port: p.port, raw: p };
}

function stringList(value: unknown, problems: Problems, where: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) {
    problems.part('invalid-field', `${where} is not a list: ${show(value)}`);
    return [];
  }
  const out: string[] = [];
  value.forEach((v, i) => {
    if (typeof v === 'string') out.push(v);
    else problems.part('invalid-field', `${where}[${i}] ${show(v)}`);
  });
  return out;
}

function ipList(value: unknown, problems: Problems, where: string): string[] {
  const out: string[] = [];
  stringList(value, problems, where).forEach((text, i) => {
    const ip = canonicalIp(text);
    if (ip === undefined) problems.part('invalid-ip', `${where}[${i}] ${show(text)}`);
    else if (!out.includes(ip)) out.push(ip);
  });
  return out;
}

function enumField<T extends string>(value: unknown, allowed: readonly T[], fallback: T, problems: Problems, where: string): T {
  if (value === undefined || value === null || value === '') return fallback;
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  problems.part('invalid-field', `${where} ${show(value)}`);
  return fallback;
}

export function validateService(obj: unknown): ServiceVerdict {
  const id = identity('Service', obj);
  if ('rejected' in id) return id;
  const { problems } = id;
  const spec = (obj as Rec).spec;
  if (!isRecord(spec)) return problems.whole('missing-field', 'spec');

  const type = enumField(spec.type, ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'] as const, 'ClusterIP', problems, 'spec.type');
  if (type === 'ExternalName') return { skipped: 'ExternalName', rejections: problems.list };

  // kube-proxy skips services whose ClusterIP is unset or "None" (headless).
  const clusterIPText = spec.clusterIP;
  if (clusterIPText === 'None') return { skipped: 'headless', rejections: problems.list };
  const listedIPs = spec.clusterIPs === undefined || spec.clusterIPs === null ? [] : stringList(spec.clusterIPs, problems, 'spec.clusterIPs');
  if (listedIPs[0] === 'None') return { skipped: 'headless', rejections: problems.list };
  const ipTexts = listedIPs.length > 0 ? listedIPs : typeof clusterIPText === 'string' && clusterIPText !== '' ? [clusterIPText] : [];
  if (ipTexts.length === 0) return problems.whole('missing-field', 'spec.clusterIP');
  if (typeof clusterIPText === 'string' && clusterIPText !== '' && clusterIPText !== ipTexts[0]) {
    return problems.whole('invalid-field', `spec.clusterIP ${show(clusterIPText)} differs from spec.clusterIPs[0] ${show(ipTexts[0])}`);
  }
  const clusterIPs: Partial<Record<Family, string>> = {};
  for (const [i, text] of ipTexts.entries()) {
    const ip = canonicalIp(text);
    if (ip === undefined) return problems.whole('invalid-ip', `spec.clusterIPs[${i}] ${show(text)}`);
    const family = familyOf(ip)!;
    if (clusterIPs[family] !== undefined) return problems.whole('family-mismatch', `spec.clusterIPs has two IPv${family} addresses`);
    clusterIPs[family] = ip;
  }

  const ports: ValidPort[] = [];
  const rawPorts = spec.ports;
  if (rawPorts !== undefined && rawPorts !== null && !Array.isArray(rawPorts)) return problems.whole('malformed', `spec.ports is not a list: ${show(rawPorts)}`);
  for (const [i, p] of (Array.isArray(rawPorts) ? rawPorts : []).entries()) {
    const port = readPort(p, `spec.ports[${i}]`, problems);
    if (port === undefined) continue;
    const { name, protocol } = port;
    const where = `spec.ports[${i}]`;
    const nodePort = port.raw.nodePort === undefined || port.raw.nodePort === null ? 0 : port.raw.nodePort;
    if (!isPort(nodePort, true)) {
      problems.part('port-out-of-range', `${where}.nodePort ${show(nodePort)}`);
      continue;
    }
    const clash = ports.find((q) => q.name === name || (q.port === port.port && q.protocol === protocol));
    if (clash !== undefined) {
      problems.part('duplicate-port', `${where} ${show(name)} ${port.port}/${protocol} repeats an earlier port`);
      continue;
    }
    ports.push({ name, protocol, port: port.port, nodePort: type === 'ClusterIP' ? 0 : nodePort });
  }

  const externalIPs = ipList(spec.externalIPs, problems, 'spec.externalIPs');
  const lbIngress: Array<{ ip: string; vip: boolean }> = [];
  const status = (obj as Rec).status;
  const ingress = isRecord(status) && isRecord(status.loadBalancer) ? status.loadBalancer.ingress : undefined;
  if (Array.isArray(ingress) && type === 'LoadBalancer') {
    ingress.forEach((ing, i) => {
      const where = `status.loadBalancer.ingress[${i}]`;
      if (!isRecord(ing)) return problems.part('malformed', `${where} ${show(ing)}`);
      if (ing.ip === undefined || ing.ip === null || ing.ip === '') return; // hostname-only ingress
      const ip = typeof ing.ip === 'string' ? canonicalIp(ing.ip) : undefined;
      if (ip === undefined) return problems.part('invalid-ip', `${where}.ip ${show(ing.ip)}`);
      const mode = enumField(ing.ipMode, ['VIP', 'Proxy'] as const, 'VIP', problems, `${where}.ipMode`);
      lbIngress.push({ ip, vip: mode === 'VIP' });
    });
  }
  const sourceRanges: Cidr[] = [];
  stringList(spec.loadBalancerSourceRanges, problems, 'spec.loadBalancerSourceRanges').forEach((text, i) => {
    const cidr = parseCidr(text);
    if (cidr === undefined) problems.part('invalid-cidr', `spec.loadBalancerSourceRanges[${i}] ${show(text)}`);
    else if (!sourceRanges.some((c) => c.text === cidr.text)) sourceRanges.push(cidr);
  });

  const affinity = enumField(spec.sessionAffinity, ['None', 'ClientIP'] as const, 'None', problems, 'spec.sessionAffinity');
  let affinityTimeoutSeconds = 0;
  if (affinity === 'ClientIP') {
    affinityTimeoutSeconds = DEFAULT_AFFINITY_TIMEOUT;
    const cfg = spec.sessionAffinityConfig;
    const timeout = isRecord(cfg) && isRecord(cfg.clientIP) ? cfg.clientIP.timeoutSeconds : undefined;
    if (timeout !== undefined && timeout !== null) {
      if (typeof timeout === 'number' && Number.isInteger(timeout) && timeout >= 1 && timeout <= MAX_AFFINITY_TIMEOUT) affinityTimeoutSeconds = timeout;
      else problems.part('invalid-field', `spec.sessionAffinityConfig.clientIP.timeoutSeconds ${show(timeout)}`);
    }
  }
  const etp = enumField(spec.externalTrafficPolicy, ['Cluster', 'Local'] as const, 'Cluster', problems, 'spec.externalTrafficPolicy');
  const itp = enumField(spec.internalTrafficPolicy, ['Cluster', 'Local'] as const, 'Cluster', problems, 'spec.internalTrafficPolicy');
  let healthCheckNodePort = spec.healthCheckNodePort === undefined || spec.healthCheckNodePort === null ? 0 : spec.healthCheckNodePort;
  if (!isPort(healthCheckNodePort, true)) {
    problems.part('port-out-of-range', `spec.healthCheckNodePort ${show(healthCheckNodePort)}`);
    healthCheckNodePort = 0;
  }
  const annotations = isRecord(id.meta.annotations) ? id.meta.annotations : {};
  const algoText = annotations[ALGORITHM_ANNOTATION];
  const algorithm = algoText === undefined ? undefined : enumField(algoText, ['random', 'maglev'] as const, 'random', problems, `metadata.annotations["${ALGORITHM_ANNOTATION}"]`);

  return {
    service: {
      namespace: id.ns,
      name: id.name,
      type,
      clusterIPs,
      ports,
      externalIPs,
      lbIngress,
      sourceRanges,
      affinityTimeoutSeconds,
      externalTrafficPolicyLocal: etp === 'Local',
      internalTrafficPolicyLocal: itp === 'Local',
      healthCheckNodePort: healthCheckNodePort as number,
      algorithm,
    },
    rejections: problems.list,
  };
}

function condition(value: unknown, fallback: boolean, problems: Problems, where: string): boolean {
  if (value === undefined || value === null) return fallback;
  if (typeof value === 'boolean') return value;
  problems.part('invalid-field', `${where} ${show(value)}`);
  return fallback;
}

function hintNames(value: unknown, problems: Problems, where: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) {
    problems.part('invalid-field', `${where} ${show(value)}`);
    return [];
  }
  const out: string[] = [];
  for (const h of value) {
    if (isRecord(h) && typeof h.name === 'string') out.push(h.name);
    else problems.part('invalid-field', `${where} entry ${show(h)}`);
  }
  return out;
}

export function validateSlice(obj: unknown): SliceVerdict {
  const id = identity('EndpointSlice', obj);
  if ('rejected' in id) return id;
  const { problems, meta } = id;
  const o = obj as Rec;
  const labels = isRecord(meta.labels) ? meta.labels : {};
  const serviceName = labels[SERVICE_NAME_LABEL];
  if (typeof serviceName !== 'string' || serviceName === '') return problems.whole('missing-service-name', `label ${SERVICE_NAME_LABEL}`);
  const addressType = o.addressType;
  if (addressType === 'FQDN') return { skipped: 'FQDN', rejections: problems.list };
  if (addressType !== 'IPv4' && addressType !== 'IPv6') return problems.whole('invalid-field', `addressType ${show(addressType)}`);
  const family: Family = addressType === 'IPv4' ? 4 : 6;

  const ports: SliceInfo['ports'] = [];
  if (o.ports !== undefined && o.ports !== null && !Array.isArray(o.ports)) return problems.whole('malformed', `ports is not a list: ${show(o.ports)}`);
  for (const [i, p] of (Array.isArray(o.ports) ? o.ports : []).entries()) {
    const port = readPort(p, `ports[${i}]`, problems);
    if (port === undefined) continue;
    const { name, protocol } = port;
    if (ports.some((q) => q.name === name && q.protocol === protocol)) {
      problems.part('duplicate-port', `ports[${i}] ${show(name)}/${protocol}`);
      continue;
    }
    ports.push({ name, protocol, port: port.port });
  }

  const endpoints: SliceEndpoint[] = [];
  if (o.endpoints !== undefined && o.endpoints !== null && !Array.isArray(o.endpoints)) return problems.whole('malformed', `endpoints is not a list: ${show(o.endpoints)}`);
  for (const [i, e] of (Array.isArray(o.endpoints) ? o.endpoints : []).entries()) {
    const where = `endpoints[${i}]`;
    if (!isRecord(e)) {
      problems.part('malformed', `${where} ${show(e)}`);
      continue;
    }
    // kube-proxy uses the first address only.
    const first = Array.isArray(e.addresses) ? e.addresses[0] : undefined;
    if (first === undefined) {
      problems.part('missing-field', `${where}.addresses`);
      continue;
    }
    const ip = typeof first === 'string' ? canonicalIp(first) : undefined;
    if (ip === undefined) {
      problems.part('invalid-ip', `${where}.addresses[0] ${show(first)}`);
      continue;
    }
    if (familyOf(ip) !== family) {
      problems.part('family-mismatch', `${where}.addresses[0] ${ip} in an ${addressType} slice`);
      continue;
    }
    const cond = isRecord(e.conditions) ? e.conditions : {};
    const hints = isRecord(e.hints) ? e.hints : {};
    const nodeName = typeof e.nodeName === 'string' ? e.nodeName : '';
    endpoints.push({
      ip,
      // Absent ready and serving mean true, absent terminating means false (kube-proxy).
      ready: condition(cond.ready, true, problems, `${where}.conditions.ready`),
      serving: condition(cond.serving, true, problems, `${where}.conditions.serving`),
      terminating: condition(cond.terminating, false, problems, `${where}.conditions.terminating`),
      nodeName,
      zone: typeof e.zone === 'string' ? e.zone : '',
      zoneHints: hintNames(hints.forZones, problems, `${where}.hints.forZones`),
      nodeHints: hintNames(hints.forNodes, problems, `${where}.hints.forNodes`),
    });
  }
  return {
    slice: { namespace: id.ns, name: id.name, serviceKey: `${id.ns}/${serviceName}`, family, ports, endpoints },
    rejections: problems.list,
  };
}
