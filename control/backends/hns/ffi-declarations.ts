// The koffi declarations of the computenetwork.dll functions this backend calls, as data (no
// koffi here): hcn-ffi.ts binds them on Windows, and a test checks each against the prototype in
// the Windows SDK's computenetwork.h. Strings go in as UTF-16 (PCWSTR); strings the service
// returns (PWSTR*) come back as pointers, read and then released with CoTaskMemFree as the header
// requires; handles are opaque pointers; REFGUID is a pointer to a GUID struct.

/** Types the declarations use, defined in hcn-ffi.ts before binding. */
export const FFI_TYPES = {
  HRESULT: 'int32_t (alias)',
  GUID: 'struct { uint32_t Data1; uint16_t Data2; uint16_t Data3; uint8_t Data4[8]; }',
  HCN_NETWORK: 'opaque pointer',
  HCN_ENDPOINT: 'opaque pointer',
  HCN_LOADBALANCER: 'opaque pointer',
} as const;

export const HCN_DECLARATIONS = {
  HcnEnumerateNetworks: 'HRESULT __stdcall HcnEnumerateNetworks(const char16_t *Query, _Out_ void **Networks, _Out_ void **ErrorRecord)',
  HcnOpenNetwork: 'HRESULT __stdcall HcnOpenNetwork(const GUID *Id, _Out_ HCN_NETWORK *Network, _Out_ void **ErrorRecord)',
  HcnQueryNetworkProperties: 'HRESULT __stdcall HcnQueryNetworkProperties(HCN_NETWORK Network, const char16_t *Query, _Out_ void **Properties, _Out_ void **ErrorRecord)',
  HcnCloseNetwork: 'HRESULT __stdcall HcnCloseNetwork(HCN_NETWORK Network)',

  HcnEnumerateEndpoints: 'HRESULT __stdcall HcnEnumerateEndpoints(const char16_t *Query, _Out_ void **Endpoints, _Out_ void **ErrorRecord)',
  HcnCreateEndpoint: 'HRESULT __stdcall HcnCreateEndpoint(HCN_NETWORK Network, const GUID *Id, const char16_t *Settings, _Out_ HCN_ENDPOINT *Endpoint, _Out_ void **ErrorRecord)',
  HcnOpenEndpoint: 'HRESULT __stdcall HcnOpenEndpoint(const GUID *Id, _Out_ HCN_ENDPOINT *Endpoint, _Out_ void **ErrorRecord)',
  HcnQueryEndpointProperties: 'HRESULT __stdcall HcnQueryEndpointProperties(HCN_ENDPOINT Endpoint, const char16_t *Query, _Out_ void **Properties, _Out_ void **ErrorRecord)',
  HcnDeleteEndpoint: 'HRESULT __stdcall HcnDeleteEndpoint(const GUID *Id, _Out_ void **ErrorRecord)',
  HcnCloseEndpoint: 'HRESULT __stdcall HcnCloseEndpoint(HCN_ENDPOINT Endpoint)',

  HcnEnumerateLoadBalancers: 'HRESULT __stdcall HcnEnumerateLoadBalancers(const char16_t *Query, _Out_ void **LoadBalancer, _Out_ void **ErrorRecord)',
  HcnCreateLoadBalancer: 'HRESULT __stdcall HcnCreateLoadBalancer(const GUID *Id, const char16_t *Settings, _Out_ HCN_LOADBALANCER *LoadBalancer, _Out_ void **ErrorRecord)',
  HcnOpenLoadBalancer: 'HRESULT __stdcall HcnOpenLoadBalancer(const GUID *Id, _Out_ HCN_LOADBALANCER *LoadBalancer, _Out_ void **ErrorRecord)',
  HcnModifyLoadBalancer: 'HRESULT __stdcall HcnModifyLoadBalancer(HCN_LOADBALANCER LoadBalancer, const char16_t *Settings, _Out_ void **ErrorRecord)',
  HcnQueryLoadBalancerProperties: 'HRESULT __stdcall HcnQueryLoadBalancerProperties(HCN_LOADBALANCER LoadBalancer, const char16_t *Query, _Out_ void **Properties, _Out_ void **ErrorRecord)',
  HcnDeleteLoadBalancer: 'HRESULT __stdcall HcnDeleteLoadBalancer(const GUID *Id, _Out_ void **ErrorRecord)',
  HcnCloseLoadBalancer: 'HRESULT __stdcall HcnCloseLoadBalancer(HCN_LOADBALANCER LoadBalancer)',
} as const;

export type HcnFunctionName = keyof typeof HCN_DECLARATIONS;

/** ole32.dll: frees the strings HCN returns. */
export const CO_TASK_MEM_FREE = 'void __stdcall CoTaskMemFree(void *pv)';

/** "6ba7b810-9dad-11d1-80b4-00c04fd430c8" -> the GUID struct's fields (Data4 in byte order). */
export function guidStruct(id: string): { Data1: number; Data2: number; Data3: number; Data4: number[] } {
  const m = /^\{?([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})\}?$/i.exec(id);
  if (m === null) throw new Error(`not a GUID: ${JSON.stringify(id)}`);
  const tail = m[4]! + m[5]!;
  return { Data1: parseInt(m[1]!, 16), Data2: parseInt(m[2]!, 16), Data3: parseInt(m[3]!, 16), Data4: Array.from({ length: 8 }, (_, i) => parseInt(tail.slice(2 * i, 2 * i + 2), 16)) };
}
