// The koffi declarations of computenetwork.dll against the Windows SDK's computenetwork.h: the
// prototypes below are copied from the header as Microsoft documents it ("RPC context handles for
// HCN", the HCN API reference), SAL annotations included. Each declaration must name the same
// function with the same parameters in the same order, each parameter's SDK type translated
// the one way the binding translates it. koffi itself then parses every declaration with the
// binding's type definitions (koffi.proto only parses: no library is loaded on Linux).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CO_TASK_MEM_FREE, guidStruct, HCN_DECLARATIONS } from '../../control/backends/hns/ffi-declarations.ts';

const HEADER = `
HRESULT WINAPI HcnEnumerateNetworks(_In_ PCWSTR Query, _Outptr_ PWSTR* Networks, _Outptr_opt_ PWSTR* ErrorRecord);
HRESULT WINAPI HcnOpenNetwork(_In_ REFGUID Id, _Out_ PHCN_NETWORK Network, _Outptr_opt_ PWSTR* ErrorRecord);
HRESULT WINAPI HcnQueryNetworkProperties(_In_ HCN_NETWORK Network, _In_ PCWSTR Query, _Outptr_ PWSTR* Properties, _Outptr_opt_ PWSTR* ErrorRecord);
HRESULT WINAPI HcnCloseNetwork(_In_ HCN_NETWORK Network);
HRESULT WINAPI HcnEnumerateEndpoints(_In_ PCWSTR Query, _Outptr_ PWSTR* Endpoints, _Outptr_opt_ PWSTR* ErrorRecord);
HRESULT WINAPI HcnCreateEndpoint(_In_ HCN_NETWORK Network, _In_ REFGUID Id, _In_ PCWSTR Settings, _Out_ PHCN_ENDPOINT Endpoint, _Outptr_opt_ PWSTR* ErrorRecord);
HRESULT WINAPI HcnOpenEndpoint(_In_ REFGUID Id, _Out_ PHCN_ENDPOINT Endpoint, _Outptr_opt_ PWSTR* ErrorRecord);
HRESULT WINAPI HcnModifyEndpoint(_In_ HCN_ENDPOINT Endpoint, _In_ PCWSTR Settings, _Outptr_opt_ PWSTR* ErrorRecord);
HRESULT WINAPI HcnQueryEndpointProperties(_In_ HCN_ENDPOINT Endpoint, _In_ PCWSTR Query, _Outptr_ PWSTR* Properties, _Outptr_opt_ PWSTR* ErrorRecord);
HRESULT WINAPI HcnDeleteEndpoint(_In_ REFGUID Id, _Outptr_opt_ PWSTR* ErrorRecord);
HRESULT WINAPI HcnCloseEndpoint(_In_ HCN_ENDPOINT Endpoint);
HRESULT WINAPI HcnEnumerateLoadBalancers(_In_ PCWSTR Query, _Outptr_ PWSTR* LoadBalancer, _Outptr_opt_ PWSTR* ErrorRecord);
HRESULT WINAPI HcnCreateLoadBalancer(_In_ REFGUID Id, _In_ PCWSTR Settings, _Out_ PHCN_LOADBALANCER LoadBalancer, _Outptr_opt_ PWSTR* ErrorRecord);
HRESULT WINAPI HcnOpenLoadBalancer(_In_ REFGUID Id, _Out_ PHCN_LOADBALANCER LoadBalancer, _Outptr_opt_ PWSTR* ErrorRecord);
HRESULT WINAPI HcnModifyLoadBalancer(_In_ HCN_LOADBALANCER LoadBalancer, _In_ PCWSTR Settings, _Outptr_opt_ PWSTR* ErrorRecord);
HRESULT WINAPI HcnQueryLoadBalancerProperties(_In_ HCN_LOADBALANCER LoadBalancer, _In_ PCWSTR Query, _Outptr_ PWSTR* Properties, _Outptr_opt_ PWSTR* ErrorRecord);
HRESULT WINAPI HcnDeleteLoadBalancer(_In_ REFGUID Id, _Outptr_opt_ PWSTR* ErrorRecord);
HRESULT WINAPI HcnCloseLoadBalancer(_In_ HCN_LOADBALANCER LoadBalancer);
`;

interface Param {
  type: string;
  name: string;
}

/** "RET CONV Name(params)" -> parts; params split on commas, the last word the name, the rest its type. */
function parse(proto: string): { ret: string; name: string; params: Param[] } {
  const m = /^\s*(.+?)\s+(\w+)\s*\((.*)\)\s*;?\s*$/.exec(proto);
  assert.ok(m, `a prototype: ${proto}`);
  const params = m[3]!.trim() === '' ? [] : m[3]!.split(',').map((p) => {
    const words = p.trim().replace(/\*\s*/g, '* ').trim().split(/\s+/);
    return { name: words.pop()!, type: words.join(' ').replace(/\s+\*/g, '*').trim() };
  });
  return { ret: m[1]!, name: m[2]!, params };
}

/** How the binding writes each SDK parameter type (SAL annotation included). */
function translate(sdkType: string): string {
  const t = sdkType.replace(/\s+/g, ' ');
  if (t === '_In_ REFGUID') return 'const GUID*';
  if (t === '_In_ PCWSTR') return 'const char16_t*';
  if (t === '_Outptr_ PWSTR*' || t === '_Outptr_opt_ PWSTR*') return '_Out_ void**'; // read, then CoTaskMemFree
  const out = /^_Out_ PHCN_(NETWORK|ENDPOINT|LOADBALANCER)$/.exec(t);
  if (out) return `_Out_ HCN_${out[1]}*`;
  const handle = /^_In_ (HCN_(?:NETWORK|ENDPOINT|LOADBALANCER))$/.exec(t);
  if (handle) return handle[1]!;
  throw new Error(`no translation for SDK type ${sdkType}`);
}

const header = new Map(HEADER.trim().split('\n').map((line) => { const p = parse(line); return [p.name, p]; }));

describe('computenetwork.dll declarations', () => {
  it('match the prototypes of computenetwork.h', () => {
    for (const [name, decl] of Object.entries(HCN_DECLARATIONS)) {
      const sdk = header.get(name);
      assert.ok(sdk, `${name} is in the header`);
      const ours = parse(decl);
      assert.equal(ours.name, name);
      assert.equal(sdk.ret, 'HRESULT WINAPI');
      assert.equal(ours.ret, 'HRESULT __stdcall', `${name}: HRESULT, WINAPI (stdcall)`);
      assert.deepEqual(ours.params.map((p) => p.name), sdk.params.map((p) => p.name), `${name}: parameter names and order`);
      assert.deepEqual(ours.params.map((p) => p.type), sdk.params.map((p) => translate(p.type)), `${name}: parameter types`);
    }
    // Every HCN function the adapter needs is declared.
    for (const needed of ['HcnCreateLoadBalancer', 'HcnOpenLoadBalancer', 'HcnQueryLoadBalancerProperties', 'HcnModifyLoadBalancer', 'HcnDeleteLoadBalancer', 'HcnEnumerateLoadBalancers', 'HcnCloseLoadBalancer', 'HcnCreateEndpoint', 'HcnDeleteEndpoint', 'HcnEnumerateEndpoints', 'HcnOpenEndpoint', 'HcnQueryEndpointProperties', 'HcnCloseEndpoint']) {
      assert.ok(needed in HCN_DECLARATIONS, needed);
    }
  });

  it('koffi parses every declaration with the binding\'s types', async (t) => {
    let koffi: { proto(decl: string): unknown; alias(n: string, t: string): unknown; struct(n: string, f: Record<string, unknown>): unknown; array(t: string, n: number): unknown; pointer(n: string, t: unknown): unknown; opaque(): unknown };
    try {
      koffi = ((await import('koffi')) as unknown as { default: typeof koffi }).default;
    } catch (e) {
      // koffi is an optional dependency; npm ci installs it on Linux x64 too. Missing in CI is a failure.
      if (process.env.CI === 'true') throw e;
      t.skip(`koffi is not installed (optional dependency): ${(e as Error).message}`);
      return;
    }
    koffi.alias('HRESULT', 'int32_t');
    koffi.struct('GUID', { Data1: 'uint32_t', Data2: 'uint16_t', Data3: 'uint16_t', Data4: koffi.array('uint8_t', 8) });
    for (const h of ['HCN_NETWORK', 'HCN_ENDPOINT', 'HCN_LOADBALANCER']) koffi.pointer(h, koffi.opaque());
    for (const decl of [...Object.values(HCN_DECLARATIONS), CO_TASK_MEM_FREE]) assert.doesNotThrow(() => koffi.proto(decl), decl);
  });

  it('GUIDs become the GUID struct in Windows\' field order', () => {
    assert.deepEqual(guidStruct('6ba7b810-9dad-11d1-80b4-00c04fd430c8'), { Data1: 0x6ba7b810, Data2: 0x9dad, Data3: 0x11d1, Data4: [0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8] });
    assert.throws(() => guidStruct('nope'), /not a GUID/);
  });
});
