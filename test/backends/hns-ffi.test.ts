// The koffi declarations of computenetwork.dll against the Windows SDK's computenetwork.h: the
// prototypes below are copied from the header as Microsoft documents it ("RPC context handles for
// HCN", the HCN API reference), SAL annotations included. Each declaration must name the same
// function with the same parameters in the same order, each parameter's SDK type translated
// the one way the binding translates it. koffi itself then parses every declaration with the
// binding's type definitions (koffi.proto only parses: no library is loaded on Linux).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import { CO_TASK_MEM_FREE, guidStruct, HCN_DECLARATIONS } from '../../control/backends/hns/ffi-declarations.ts';
import { callWithOuts, defineHcnTypes, takeWideString, type Koffi } from '../../control/backends/hns/hcn-ffi.ts';

/** koffi, an optional dependency (npm ci installs it on Linux x64 too): missing is a failure in CI, a skip elsewhere. */
async function loadKoffi(t: TestContext): Promise<Koffi | undefined> {
  try {
    return ((await import('koffi')) as unknown as { default: Koffi }).default;
  } catch (e) {
    if (process.env.CI === 'true') throw e;
    t.skip(`koffi is not installed (optional dependency): ${(e as Error).message}`);
    return undefined;
  }
}

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
    const koffi = await loadKoffi(t);
    if (koffi === undefined) return;
    defineHcnTypes(koffi);
    for (const decl of [...Object.values(HCN_DECLARATIONS), CO_TASK_MEM_FREE]) assert.doesNotThrow(() => koffi.proto(decl), decl);
  });

  it('the calling pattern works through koffi (libc here): async call, _Out_ void ** filled, GUID layout, returned strings read and freed', async (t) => {
    const koffi = await loadKoffi(t);
    if (koffi === undefined) return;
    const libc = koffi.load('libc.so.6');
    // getaddrinfo fills a trailing void ** as the Hcn* functions fill theirs (a numeric host: no lookup).
    const getaddrinfo = libc.func('int getaddrinfo(const char *node, const char *service, void *hints, _Out_ void **res)');
    const freeaddrinfo = libc.func('void freeaddrinfo(void *res)');
    const { result, values } = await callWithOuts(getaddrinfo, ['127.0.0.1', '80', null], 1);
    assert.equal(result, 0);
    assert.ok(values[0] !== null && values[0] !== undefined, 'the out-parameter holds a pointer');
    freeaddrinfo(values[0]);
    // REFGUID: the GUID struct koffi lays out is the 16 bytes Windows reads (Data1-3 little-endian, Data4 as is).
    defineHcnTypes(koffi);
    const memcmp = libc.func('int memcmp(const GUID *a, const uint8_t *b, size_t n)');
    const wire = Buffer.from('10b8a76bad9dd11180b400c04fd430c8', 'hex');
    assert.equal(memcmp(guidStruct('6ba7b810-9dad-11d1-80b4-00c04fd430c8'), wire, 16), 0);
    assert.notEqual(memcmp(guidStruct('6ba7b810-9dad-11d1-80b4-00c04fd430c9'), wire, 16), 0);
    // UTF-16 as HCN returns JSON: read up to the NUL, then released exactly once.
    const freed: unknown[] = [];
    const wide = Buffer.from('{"ID":"é"}\0trailing', 'utf16le');
    assert.equal(takeWideString(koffi, wide, (p) => freed.push(p)), '{"ID":"é"}');
    assert.deepEqual(freed, [wide] as unknown[]);
    assert.equal(takeWideString(koffi, null, (p) => freed.push(p)), '', 'NULL: nothing to read or free');
    assert.equal(freed.length, 1);
  });

  it('GUIDs become the GUID struct in Windows\' field order', () => {
    assert.deepEqual(guidStruct('6ba7b810-9dad-11d1-80b4-00c04fd430c8'), { Data1: 0x6ba7b810, Data2: 0x9dad, Data3: 0x11d1, Data4: [0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8] });
    assert.throws(() => guidStruct('nope'), /not a GUID/);
  });
});
