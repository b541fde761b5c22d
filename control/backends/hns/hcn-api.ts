// The HCN service as computenetwork.dll exposes it: one method per Hcn* function, JSON strings in
// and out, handles for opened objects, failures as HcnError with the HRESULT and the service's
// error record. On Windows it is the FFI binding (hcn-ffi.ts); in the tests an in-memory HCN.
// Everything above this interface (hcn-client.ts, apply.ts) is the same code on both.

/** An opened network, endpoint or load balancer (HCN_NETWORK, HCN_ENDPOINT, HCN_LOADBALANCER). */
export type HcnHandle = { readonly hcnHandle: unknown };

export interface HcnApi {
  enumerateNetworks(query: string): Promise<string>;
  openNetwork(id: string): Promise<HcnHandle>;
  queryNetworkProperties(network: HcnHandle, query: string): Promise<string>;
  closeNetwork(network: HcnHandle): Promise<void>;

  enumerateEndpoints(query: string): Promise<string>;
  createEndpoint(network: HcnHandle, id: string, settings: string): Promise<HcnHandle>;
  openEndpoint(id: string): Promise<HcnHandle>;
  queryEndpointProperties(endpoint: HcnHandle, query: string): Promise<string>;
  deleteEndpoint(id: string): Promise<void>;
  closeEndpoint(endpoint: HcnHandle): Promise<void>;

  enumerateLoadBalancers(query: string): Promise<string>;
  createLoadBalancer(id: string, settings: string): Promise<HcnHandle>;
  openLoadBalancer(id: string): Promise<HcnHandle>;
  modifyLoadBalancer(loadBalancer: HcnHandle, settings: string): Promise<void>;
  queryLoadBalancerProperties(loadBalancer: HcnHandle, query: string): Promise<string>;
  deleteLoadBalancer(id: string): Promise<void>;
  closeLoadBalancer(loadBalancer: HcnHandle): Promise<void>;
}

/** HRESULTs the service returns that this backend tells apart (winerror.h; hcsshim checks the same ones). */
export const HRESULT = {
  /** HRESULT_FROM_WIN32(ERROR_NOT_FOUND): hcsshim's IsElementNotFoundError. */
  ERROR_NOT_FOUND: 0x80070490,
  E_INVALIDARG: 0x80070057,
  HCN_E_NETWORK_NOT_FOUND: 0x803b0001,
  HCN_E_ENDPOINT_NOT_FOUND: 0x803b0002,
  HCN_E_INVALID_ENDPOINT: 0x803b000c,
  /** hcsshim's IsPortAlreadyExistsError: a load balancer already listens there. */
  HCN_E_PORT_ALREADY_EXISTS: 0x803b0013,
  HCN_E_GUID_CONVERSION_FAILURE: 0x803b0019,
  HCN_E_INVALID_JSON: 0x803b001b,
  HCN_E_INVALID_IP: 0x803b001e,
} as const;

export class HcnError extends Error {
  readonly call: string;
  /** The HRESULT as an unsigned 32-bit number. */
  readonly hresult: number;
  /** The error record JSON the service returned, if any. */
  readonly record: string;

  constructor(call: string, hresult: number, record: string) {
    super(`${call}: HRESULT 0x${hresult.toString(16).padStart(8, '0')}${record !== '' ? ` ${record}` : ''}`);
    this.name = 'HcnError';
    this.call = call;
    this.hresult = hresult;
    this.record = record;
  }
}

export const isNotFound = (e: unknown): boolean => e instanceof HcnError && e.hresult === HRESULT.ERROR_NOT_FOUND;
export const isPortAlreadyExists = (e: unknown): boolean => e instanceof HcnError && e.hresult === HRESULT.HCN_E_PORT_ALREADY_EXISTS;
