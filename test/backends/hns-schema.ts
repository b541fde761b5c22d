// The subset of HCN's published schema 2.0 (HostComputeLoadBalancer, HostComputeEndpoint,
// HostComputeNetwork, as hcsshim's hcn structs and the HCN JSON schema reference define them) that
// the in-memory HCN checks every document against: field names, types, required fields, enums and
// flag masks. Unknown fields are refused, which is stricter than the service (it ignores them)
// on purpose: a misspelt field would be silently lost on Windows.
import { isIP } from 'node:net';

export type Spec =
  | { type: 'string' | 'guid' | 'ip' | 'mac' | 'bool' | 'any' }
  | { type: 'uint'; bits: 8 | 16 | 32; oneOf?: readonly number[]; mask?: number }
  | { type: 'array'; items: Spec; minItems?: number }
  | { type: 'object'; fields: Readonly<Record<string, Spec>>; required?: readonly string[] }
  | { type: 'map' };

const str: Spec = { type: 'string' };
const guid: Spec = { type: 'guid' };
const ip: Spec = { type: 'ip' };
const u16: Spec = { type: 'uint', bits: 16 };
const schemaVersion: Spec = { type: 'object', fields: { Major: { type: 'uint', bits: 32, oneOf: [2] }, Minor: { type: 'uint', bits: 32 } }, required: ['Major', 'Minor'] };

/** LoadBalancerPortMapping: Protocol (IANA number), ports, DistributionType (None, SourceIPProtocol, SourceIP), Flags (ILB 1, LocalRoutedVIP 2, UseMux 4, PreserveDIP 8, VipExternalIP 16). */
export const LOAD_BALANCER_PORT_MAPPING: Spec = {
  type: 'object',
  fields: {
    Protocol: { type: 'uint', bits: 32, oneOf: [0, 6, 17, 132] },
    InternalPort: u16,
    ExternalPort: u16,
    DistributionType: { type: 'uint', bits: 32, oneOf: [0, 1, 2] },
    Flags: { type: 'uint', bits: 32, mask: 0x1f },
  },
  required: ['Protocol'],
};

/** HostComputeLoadBalancer; Flags: DSR 1, IPv6 2. */
export const HOST_COMPUTE_LOAD_BALANCER: Spec = {
  type: 'object',
  fields: {
    ID: guid,
    HostComputeEndpoints: { type: 'array', items: guid },
    SourceVIP: ip,
    FrontendVIPs: { type: 'array', items: ip },
    PortMappings: { type: 'array', items: LOAD_BALANCER_PORT_MAPPING, minItems: 1 },
    SchemaVersion: schemaVersion,
    Flags: { type: 'uint', bits: 32, mask: 0x3 },
  },
  required: ['PortMappings', 'SchemaVersion'],
};

/** hcsshim's EndpointPolicyType values. */
export const ENDPOINT_POLICY_TYPES = ['PortMapping', 'ACL', 'QOS', 'L2Driver', 'OutBoundNAT', 'SDNRoute', 'L4Proxy', 'L4WFPPROXY', 'PortName', 'EncapOverhead', 'ProviderAddress', 'InterfaceConstraint', 'Iov', 'TierAcl'] as const;

export const ENDPOINT_POLICY: Spec = { type: 'object', fields: { Type: str, Settings: { type: 'map' } }, required: ['Type'] };

/** Settings of each endpoint policy type this backend writes. */
export const ENDPOINT_POLICY_SETTINGS: Readonly<Record<string, Spec>> = {
  ProviderAddress: { type: 'object', fields: { ProviderAddress: ip }, required: ['ProviderAddress'] },
};

/** HostComputeEndpoint; Flags: RemoteEndpoint 1, DisableICC 2, EnableLowInterfaceMetric 4, EnableDhcp 8 (and later bits). */
export const HOST_COMPUTE_ENDPOINT: Spec = {
  type: 'object',
  fields: {
    ID: guid,
    Name: str,
    HostComputeNetwork: guid,
    HostComputeNamespace: guid,
    Policies: { type: 'array', items: ENDPOINT_POLICY },
    IpConfigurations: { type: 'array', items: { type: 'object', fields: { IpAddress: ip, PrefixLength: { type: 'uint', bits: 8 } }, required: ['IpAddress'] } },
    Dns: { type: 'map' },
    Routes: { type: 'array', items: { type: 'map' } },
    MacAddress: { type: 'mac' },
    Flags: { type: 'uint', bits: 32, mask: 0xff },
    Health: { type: 'map' },
    SchemaVersion: schemaVersion,
  },
  required: ['SchemaVersion'],
};

export const HOST_COMPUTE_NETWORK: Spec = {
  type: 'object',
  fields: {
    ID: guid,
    Name: str,
    Type: { type: 'string' },
    Policies: { type: 'array', items: { type: 'object', fields: { Type: str, Settings: { type: 'map' } }, required: ['Type'] } },
    MacPool: { type: 'map' },
    Dns: { type: 'map' },
    Ipams: { type: 'array', items: { type: 'map' } },
    Flags: { type: 'uint', bits: 32 },
    SchemaVersion: schemaVersion,
  },
  required: ['Name', 'Type', 'SchemaVersion'],
};

const GUID = /^\{?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}?$/i;
const MAC = /^[0-9a-f]{2}([-:])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$/i;

export const isGuid = (s: unknown): s is string => typeof s === 'string' && GUID.test(s);

/** Why a value does not match the spec, each problem with its path (e.g. "PortMappings[0].Flags"); empty when it does. */
export interface Problem {
  path: string;
  problem: string;
  kind: 'type' | 'ip' | 'guid';
}

export function validate(value: unknown, spec: Spec, path = ''): Problem[] {
  const at = path === '' ? '(document)' : path;
  const bad = (problem: string, kind: Problem['kind'] = 'type'): Problem[] => [{ path: at, problem, kind }];
  switch (spec.type) {
    case 'any':
      return [];
    case 'string':
      return typeof value === 'string' ? [] : bad('want a string');
    case 'bool':
      return typeof value === 'boolean' ? [] : bad('want a boolean');
    case 'guid':
      return isGuid(value) ? [] : bad(`not a GUID: ${JSON.stringify(value)}`, 'guid');
    case 'ip':
      return typeof value === 'string' && isIP(value) !== 0 ? [] : bad(`not an IP address: ${JSON.stringify(value)}`, 'ip');
    case 'mac':
      return typeof value === 'string' && MAC.test(value) ? [] : bad(`not a MAC address: ${JSON.stringify(value)}`);
    case 'map':
      return value !== null && typeof value === 'object' && !Array.isArray(value) ? [] : bad('want an object');
    case 'uint': {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value >= 2 ** spec.bits) return bad(`want a uint${spec.bits}, got ${JSON.stringify(value)}`);
      if (spec.oneOf !== undefined && !spec.oneOf.includes(value)) return bad(`${value} is not one of ${spec.oneOf.join(', ')}`);
      if (spec.mask !== undefined && (value & ~spec.mask) !== 0) return bad(`flags 0x${value.toString(16)} outside 0x${spec.mask.toString(16)}`);
      return [];
    }
    case 'array': {
      if (!Array.isArray(value)) return bad('want an array');
      if (spec.minItems !== undefined && value.length < spec.minItems) return bad(`want at least ${spec.minItems} item(s)`);
      return value.flatMap((v, i) => validate(v, spec.items, `${path}[${i}]`));
    }
    case 'object': {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return bad('want an object');
      const o = value as Record<string, unknown>;
      const problems: Problem[] = (spec.required ?? []).filter((k) => o[k] === undefined).map((k) => ({ path: path === '' ? k : `${path}.${k}`, problem: 'required', kind: 'type' }));
      for (const [k, v] of Object.entries(o)) {
        const sub = spec.fields[k];
        const p = path === '' ? k : `${path}.${k}`;
        if (sub === undefined) problems.push({ path: p, problem: 'unknown field', kind: 'type' });
        else if (v !== null) problems.push(...validate(v, sub, p));
      }
      return problems;
    }
  }
}
