// Which builds of the datapath this kernel loads. All come from bpf/datapath.c (bpf/build.sh) and
// share their maps and pins:
//   kern-ctx  datapath-kctx.o    reads skb->ip_summed through bpf_cast_to_kern_ctx (Linux 6.2+)
//                                and so updates TCP/UDP checksums inline;
//   portable  datapath.o         leaves that to bpf_l4_csum_replace; needs bpf_set_retval (5.18)
//                                and bpf_ktime_get_coarse_ns (5.11);
//   compat    datapath-compat.o  neither helper (5.10 to 5.17): the socket hooks refuse a connect
//                                to a Service without endpoints with EPERM, not ECONNREFUSED
//                                (bpf/include/sock.h), and the clock reads CLOCK_MONOTONIC.
// What the kernel has is probed, not read from its version: distributions backport helpers.
import { fileURLToPath } from 'node:url';
import { helperSupported, kernelFunctionExists } from '../../bpf/kernel.ts';

const BUILD_DIR = fileURLToPath(new URL('../../../build/bpf/', import.meta.url));

/** The kfunc the fastest build calls; its presence in the kernel's BTF decides. */
export const KERN_CTX_KFUNC = 'bpf_cast_to_kern_ctx';

export type DatapathBuild = 'kern-ctx' | 'portable' | 'compat';

/** What the builds differ by, as probed on the running kernel. */
export interface KernelFeatures {
  /** bpf_cast_to_kern_ctx in the kernel's BTF (6.2+). */
  kernCtx: boolean;
  /** bpf_set_retval from cgroup sock_addr programs (5.18+). */
  setRetval: boolean;
  /** bpf_ktime_get_coarse_ns from tc programs (5.11+). */
  coarseClock: boolean;
}

let probed: KernelFeatures | undefined;

/** The running kernel's features, probed once per process (the kernel does not change). */
export function kernelFeatures(): KernelFeatures {
  probed ??= {
    kernCtx: kernelFunctionExists(KERN_CTX_KFUNC),
    setRetval: helperSupported('set_retval'),
    coarseClock: helperSupported('ktime_get_coarse_ns'),
  };
  return probed;
}

/** Every build a kernel with these features loads, best first (pure). compat always qualifies. */
export function buildsFor(f: KernelFeatures): DatapathBuild[] {
  const portable = f.setRetval && f.coarseClock;
  return [...(portable && f.kernCtx ? ['kern-ctx' as const] : []), ...(portable ? ['portable' as const] : []), 'compat'];
}

/**
 * What a build gives up against the best one, in a sentence for the agent's log (undefined:
 * nothing). Said once, when the build is loaded.
 */
export function buildDegradation(build: DatapathBuild, f: KernelFeatures): string | undefined {
  if (build !== 'compat') return undefined;
  const why = [!f.setRetval && 'bpf_set_retval (5.18)', !f.coarseClock && 'bpf_ktime_get_coarse_ns (5.11)'].filter(Boolean).join(' and ');
  return `compat datapath build${why ? ` (the kernel lacks ${why})` : ''}: a process on the node that connects or sends to a Service without endpoints gets EPERM, not ECONNREFUSED as from kube-proxy's REJECT (a cgroup hook can choose the error only with bpf_set_retval); pods still get a TCP RST or ICMP port unreachable; the datapath clock reads CLOCK_MONOTONIC`;
}

/** Every build this kernel loads, best first: what the agent falls back along, and what tests and benches cover. */
export function loadableBuilds(): DatapathBuild[] {
  return buildsFor(kernelFeatures());
}

/** The best build this kernel loads. */
export function datapathBuild(): DatapathBuild {
  return loadableBuilds()[0]!;
}

const SUFFIX: Record<DatapathBuild, string> = { 'kern-ctx': '-kctx', portable: '', compat: '-compat' };

/** The object file of a build in `dir` (build/bpf/ by default; benches keep theirs beside it). */
export function datapathObjectPath(build: DatapathBuild = datapathBuild(), dir = BUILD_DIR, base = 'datapath'): string {
  return `${dir}${base}${SUFFIX[build]}.o`;
}

/** The build an object file of datapathObjectPath() is, or undefined for any other file. */
export function buildOfObject(path: string): DatapathBuild | undefined {
  const m = /datapath(-kctx|-compat)?\.o$/.exec(path);
  if (!m) return undefined;
  return m[1] === '-kctx' ? 'kern-ctx' : m[1] === '-compat' ? 'compat' : 'portable';
}

/** The object files of loadableBuilds(), in the same order. */
export function datapathCandidates(): string[] {
  return loadableBuilds().map((b) => datapathObjectPath(b));
}
