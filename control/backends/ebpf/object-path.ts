// Which build of the datapath this kernel loads. Both come from bpf/datapath.c (bpf/build.sh):
// datapath-kctx.o reads skb->ip_summed through bpf_cast_to_kern_ctx (Linux 6.2+) and so updates
// TCP/UDP checksums inline; datapath.o leaves that to bpf_l4_csum_replace (two helper calls per
// rewrite) and loads on every supported kernel. Maps and their pins are the same in both.
import { fileURLToPath } from 'node:url';
import { kernelFunctionExists } from '../../bpf/kernel.ts';

const BUILD_DIR = fileURLToPath(new URL('../../../build/bpf/', import.meta.url));

/** The kfunc the faster build calls; its presence in the kernel's BTF decides. */
export const KERN_CTX_KFUNC = 'bpf_cast_to_kern_ctx';

export type DatapathBuild = 'kern-ctx' | 'portable';

let chosen: DatapathBuild | undefined;

/** The best build this kernel loads (asked of its BTF once per process: the kernel does not change). */
export function datapathBuild(): DatapathBuild {
  chosen ??= kernelFunctionExists(KERN_CTX_KFUNC) ? 'kern-ctx' : 'portable';
  return chosen;
}

/** Every build this kernel loads, best first: what the agent falls back along, and what tests and benches cover. */
export function loadableBuilds(): DatapathBuild[] {
  return datapathBuild() === 'kern-ctx' ? ['kern-ctx', 'portable'] : ['portable'];
}

/** The object file of a build in `dir` (build/bpf/ by default; benches keep theirs beside it). */
export function datapathObjectPath(build: DatapathBuild = datapathBuild(), dir = BUILD_DIR, base = 'datapath'): string {
  return `${dir}${base}${build === 'kern-ctx' ? '-kctx' : ''}.o`;
}

/** The object files of loadableBuilds(), in the same order. */
export function datapathCandidates(): string[] {
  return loadableBuilds().map((b) => datapathObjectPath(b));
}
