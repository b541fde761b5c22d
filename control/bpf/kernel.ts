// What the running kernel offers programs, asked before choosing which object to load.
import { call } from './errors.ts';
import { native, type ProbedHelper } from './native.ts';

export type { ProbedHelper } from './native.ts';

/** Whether the kernel's BTF has a function of this name (how a kfunc's presence shows). */
export function kernelFunctionExists(name: string): boolean {
  return call(() => native().kernelFunctionExists(name));
}

/** Whether the kernel's verifier accepts a call to this helper (a tiny program is loaded to ask). */
export function helperSupported(name: ProbedHelper): boolean {
  return call(() => native().helperSupported(name));
}
