// What the running kernel offers programs, asked before choosing which object to load.
import { call } from './errors.ts';
import { native } from './native.ts';

/** Whether the kernel's BTF has a function of this name (how a kfunc's presence shows). */
export function kernelFunctionExists(name: string): boolean {
  return call(() => native().kernelFunctionExists(name));
}
