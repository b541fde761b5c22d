// The Windows node of the semantic case table as HCN would show it before any proxy ran: an
// L2Bridge network made by the CNI, one local endpoint per pod of node n0 (both families), and
// the host's root endpoint "cbr0". Fixed GUIDs so golden documents are stable.
import { HcnClient } from '../../control/backends/hns/hcn-client.ts';
import { HnsBackend } from '../../control/backends/hns/apply.ts';
import { SCHEMA_V2 } from '../../control/backends/hns/hcn-types.ts';
import type { WinkernelConfig } from '../../control/backends/hns/winkernel-config.ts';
import { FakeHcn } from './hns-fake-hcn.ts';

export const NETWORK_ID = '3f1f4f6e-0c2a-4f57-9d1e-6a0b7c9e0001';
export const NETWORK_NAME = 'cbr0';

export const winkernel = (over: Partial<WinkernelConfig> = {}): WinkernelConfig => ({
  networkName: NETWORK_NAME,
  sourceVip: '',
  enableDSR: true,
  rootHnsEndpointName: 'cbr0',
  forwardHealthCheckVip: false,
  ...over,
});

/** guid(7) = "00000000-0000-4000-8000-000000000007": readable ids for fixtures. */
export const guid = (n: number): string => `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;

export interface LocalPod {
  id: string;
  ips: string[];
}

export function fakeHcn(localPods: readonly LocalPod[], options: { type?: string; rootIp?: string } = {}): FakeHcn {
  const hcn = new FakeHcn();
  hcn.addNetwork({ ID: NETWORK_ID, Name: NETWORK_NAME, Type: options.type ?? 'L2Bridge', SchemaVersion: SCHEMA_V2 });
  for (const p of localPods) hcn.addLocalEndpoint({ ID: p.id, HostComputeNetwork: NETWORK_ID, IpConfigurations: p.ips.map((ip) => ({ IpAddress: ip })), MacAddress: '00-15-5d-00-00-01', SchemaVersion: SCHEMA_V2 });
  hcn.addLocalEndpoint({ ID: guid(0xfff), Name: 'cbr0', HostComputeNetwork: NETWORK_ID, IpConfigurations: [{ IpAddress: options.rootIp ?? '10.244.0.2' }], SchemaVersion: SCHEMA_V2 });
  return hcn;
}

export function hnsBackend(hcn: FakeHcn, over: Partial<WinkernelConfig> = {}): HnsBackend {
  return new HnsBackend({ client: new HcnClient(hcn), winkernel: winkernel(over), hostMac: '00-15-5d-aa-bb-cc', healthzPort: 10256 });
}
