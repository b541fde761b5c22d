// The HCN (Host Compute Network) documents this backend sends to and reads from Windows' HNS,
// schema 2.0, with the field names and JSON shapes hcsshim's hcn package uses (its Go structs
// marshal with these names; `Id` travels as "ID"). Constants are the service's own values.

export interface SchemaVersion {
  Major: number;
  Minor: number;
}

export const SCHEMA_V2: SchemaVersion = { Major: 2, Minor: 0 };

/** IANA protocol numbers, as HCN port mappings carry them (kube-proxy's Enum()). */
export const PROTOCOL_NUMBER = { TCP: 6, UDP: 17, SCTP: 132 } as const;

/** HostComputeLoadBalancer.Flags. */
export const LB_FLAGS = { None: 0, DSR: 1, IPv6: 2 } as const;

/** LoadBalancerPortMapping.Flags; VipExternalIP (16) is the bit kube-proxy defines itself beside hcsshim's. */
export const PORT_MAPPING_FLAGS = { None: 0, ILB: 1, LocalRoutedVIP: 2, UseMux: 4, PreserveDIP: 8, VipExternalIP: 16 } as const;

/** LoadBalancerPortMapping.DistributionType. */
export const DISTRIBUTION = { None: 0, SourceIPProtocol: 1, SourceIP: 2 } as const;

/** HostComputeEndpoint.Flags. */
export const ENDPOINT_FLAGS = { None: 0, RemoteEndpoint: 1 } as const;

export interface LoadBalancerPortMapping {
  Protocol: number;
  InternalPort: number;
  ExternalPort: number;
  DistributionType?: number;
  Flags?: number;
}

export interface HostComputeLoadBalancer {
  ID?: string;
  HostComputeEndpoints: string[];
  SourceVIP?: string;
  FrontendVIPs?: string[];
  PortMappings: LoadBalancerPortMapping[];
  SchemaVersion: SchemaVersion;
  Flags?: number;
}

export interface IpConfig {
  IpAddress: string;
  PrefixLength?: number;
}

export interface EndpointPolicy {
  Type: string;
  Settings: Record<string, unknown>;
}

export interface HostComputeEndpoint {
  ID?: string;
  Name?: string;
  HostComputeNetwork?: string;
  Policies?: EndpointPolicy[];
  IpConfigurations: IpConfig[];
  MacAddress?: string;
  Flags?: number;
  SchemaVersion: SchemaVersion;
}

export interface NetworkPolicy {
  Type: string;
  Settings: Record<string, unknown>;
}

export interface HostComputeNetwork {
  ID?: string;
  Name: string;
  /** "L2Bridge", "Overlay", "NAT", ... */
  Type: string;
  Policies?: NetworkPolicy[];
  SchemaVersion: SchemaVersion;
}

/** hcsshim's defaultQuery(): every property, schema 2.0. */
export const DEFAULT_QUERY = JSON.stringify({ SchemaVersion: SCHEMA_V2, Flags: 0 });
