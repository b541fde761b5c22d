// HcnApi over computenetwork.dll through koffi, for Windows only: koffi (an optional dependency
// with prebuilt binaries) is imported dynamically here and nowhere else, so Linux never loads it.
// Calls run on koffi's worker threads (async), so a slow HNS does not stall the agent's servers.
// Every string HCN returns is read and then freed with CoTaskMemFree.
import { CO_TASK_MEM_FREE, guidStruct, HCN_DECLARATIONS, type HcnFunctionName } from './ffi-declarations.ts';
import { HcnError, type HcnApi, type HcnHandle } from './hcn-api.ts';

// koffi's own types are not needed by the code around this file; its functions are called with
// arrays for out-parameters and yield unknown values.
export type NativeFn = ((...args: unknown[]) => number) & { async: (...args: unknown[]) => void };

export interface Koffi {
  load(path: string): { func(decl: string): NativeFn };
  proto(decl: string): unknown;
  alias(name: string, type: string): unknown;
  struct(name: string, fields: Record<string, unknown>): unknown;
  array(type: string, n: number): unknown;
  pointer(name: string, type: unknown): unknown;
  opaque(): unknown;
  decode(ptr: unknown, type: string, len: number): string;
}

/**
 * Calls a koffi function on a worker thread with `inputs` followed by `outs` out-parameters
 * (each a one-element array koffi fills); resolves with the return value and what the outs hold.
 */
export function callWithOuts(fn: NativeFn, inputs: readonly unknown[], outs: number): Promise<{ result: number; values: unknown[] }> {
  return new Promise((resolve, reject) => {
    const boxes = Array.from({ length: outs }, () => [null] as unknown[]);
    fn.async(...inputs, ...boxes, (err: Error | null, result: number) => (err !== null ? reject(err) : resolve({ result, values: boxes.map((b) => b[0]) })));
  });
}

/** Reads the NUL-terminated UTF-16 string at ptr ("" for NULL), then releases it with `free`. */
export function takeWideString(koffi: Pick<Koffi, 'decode'>, ptr: unknown, free: (p: unknown) => void): string {
  if (ptr === null || ptr === undefined) return '';
  try {
    return koffi.decode(ptr, 'char16_t', -1);
  } finally {
    free(ptr);
  }
}

const defined = new WeakSet<object>();

/** The types HCN_DECLARATIONS use (FFI_TYPES), defined once per koffi instance. */
export function defineHcnTypes(koffi: Koffi): void {
  if (defined.has(koffi)) return;
  defined.add(koffi);
  koffi.alias('HRESULT', 'int32_t');
  koffi.struct('GUID', { Data1: 'uint32_t', Data2: 'uint16_t', Data3: 'uint16_t', Data4: koffi.array('uint8_t', 8) });
  for (const h of ['HCN_NETWORK', 'HCN_ENDPOINT', 'HCN_LOADBALANCER']) koffi.pointer(h, koffi.opaque());
}

export async function loadHcnFfi(): Promise<HcnApi> {
  if (process.platform !== 'win32') throw new Error('kernelspace mode needs Windows: HCN (computenetwork.dll) exists only there');
  const koffi = ((await import('koffi')) as unknown as { default: Koffi }).default;
  defineHcnTypes(koffi);
  const dll = koffi.load('computenetwork.dll');
  const free = koffi.load('ole32.dll').func(CO_TASK_MEM_FREE);
  const fns = Object.fromEntries(Object.entries(HCN_DECLARATIONS).map(([name, decl]) => [name, dll.func(decl)])) as Record<HcnFunctionName, NativeFn>;

  const take = (ptr: unknown): string => takeWideString(koffi, ptr, free);

  /** Calls an Hcn function whose last out-parameter is the error record; resolves with the other outs, rejects with HcnError. */
  const call = async (name: HcnFunctionName, inputs: unknown[], outs: number): Promise<unknown[]> => {
    const { result: hr, values } = await callWithOuts(fns[name], inputs, outs);
    const record = outs > 0 ? take(values[outs - 1]) : '';
    // On failure HCN returns no other buffer or handle; only the error record is ours to free.
    if (hr < 0) throw new HcnError(name, hr >>> 0, record);
    return values.slice(0, Math.max(0, outs - 1));
  };
  const text = async (name: HcnFunctionName, inputs: unknown[]): Promise<string> => take((await call(name, inputs, 2))[0]);
  const handle = async (name: HcnFunctionName, inputs: unknown[]): Promise<HcnHandle> => ({ hcnHandle: (await call(name, inputs, 2))[0] });
  const none = async (name: HcnFunctionName, inputs: unknown[], outs = 1): Promise<void> => void (await call(name, inputs, outs));
  const raw = (h: HcnHandle): unknown => h.hcnHandle;

  return {
    enumerateNetworks: (q) => text('HcnEnumerateNetworks', [q]),
    openNetwork: (id) => handle('HcnOpenNetwork', [guidStruct(id)]),
    queryNetworkProperties: (h, q) => text('HcnQueryNetworkProperties', [raw(h), q]),
    closeNetwork: (h) => none('HcnCloseNetwork', [raw(h)], 0),
    enumerateEndpoints: (q) => text('HcnEnumerateEndpoints', [q]),
    createEndpoint: (net, id, settings) => handle('HcnCreateEndpoint', [raw(net), guidStruct(id), settings]),
    openEndpoint: (id) => handle('HcnOpenEndpoint', [guidStruct(id)]),
    queryEndpointProperties: (h, q) => text('HcnQueryEndpointProperties', [raw(h), q]),
    deleteEndpoint: (id) => none('HcnDeleteEndpoint', [guidStruct(id)]),
    closeEndpoint: (h) => none('HcnCloseEndpoint', [raw(h)], 0),
    enumerateLoadBalancers: (q) => text('HcnEnumerateLoadBalancers', [q]),
    createLoadBalancer: (id, settings) => handle('HcnCreateLoadBalancer', [guidStruct(id), settings]),
    openLoadBalancer: (id) => handle('HcnOpenLoadBalancer', [guidStruct(id)]),
    modifyLoadBalancer: (h, settings) => none('HcnModifyLoadBalancer', [raw(h), settings]),
    queryLoadBalancerProperties: (h, q) => text('HcnQueryLoadBalancerProperties', [raw(h), q]),
    deleteLoadBalancer: (id) => none('HcnDeleteLoadBalancer', [guidStruct(id)]),
    closeLoadBalancer: (h) => none('HcnCloseLoadBalancer', [raw(h)], 0),
  };
}
