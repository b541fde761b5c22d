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

export function datapathBuild(): DatapathBuild {
  return kernelFunctionExists(KERN_CTX_KFUNC) ? 'kern-ctx' : 'portable';
}

/** The object file of a build in `dir` (build/bpf/ by default; benches keep theirs beside it). */
export function datapathObjectPath(build: DatapathBuild = datapathBuild(), dir = BUILD_DIR, base = 'datapath'): string {
  return `${dir}${base}${build === 'kern-ctx' ? '-kctx' : ''}.o`;
}

/** The builds this kernel may load, best first (the agent falls back along this list). */
export function datapathCandidates(): string[] {
  return datapathBuild() === 'kern-ctx' ? [datapathObjectPath('kern-ctx'), datapathObjectPath('portable')] : [datapathObjectPath('portable')];
}
