// Loads every BPF object of build/bpf (not the deliberately broken fixtures) and reports, as
// one JSON line, whether this kernel's verifier accepts them, and which datapath build the agent
// would pick, with the kernel features that choice was probed from. A datapath build the kernel
// lacks the helpers for (kern-ctx without bpf_cast_to_kern_ctx, portable without bpf_set_retval)
// is never offered there by the agent: it is listed as skipped, as are the socket iterators
// (sock-destroy.o) on a kernel without bpf_sock_destroy. Run inside the test VM.
import { readdirSync } from 'node:fs';
import { release } from 'node:os';
import { VerifierError } from '../../control/bpf/errors.ts';
import { LoadedObject } from '../../control/bpf/object.ts';
import { buildOfObject, datapathBuild, kernelFeatures, loadableBuilds } from '../../control/backends/ebpf/object-path.ts';
import { buildDir } from '../bpf/objects.ts';
import { kernelFunctionExists } from '../../control/bpf/kernel.ts';
import { SOCK_DESTROY_KFUNC } from '../../control/backends/ebpf/sockets.ts';

const results: Array<{ object: string; ok: boolean; programs?: string[]; error?: string; verifierTail?: string }> = [];
const build = datapathBuild();
const objects = readdirSync(buildDir).filter((x) => x.endsWith('.o')).sort();
// The socket iterators call bpf_sock_destroy (6.5): the agent loads them only where it exists.
const destroyOffered = kernelFunctionExists(SOCK_DESTROY_KFUNC);
const offered = (f: string): boolean => {
  if (f === 'sock-destroy.o') return destroyOffered;
  const b = buildOfObject(f);
  return b === undefined || loadableBuilds().includes(b);
};
const skipped = objects.filter((f) => !offered(f));
for (const f of objects.filter(offered)) {
  try {
    const o = LoadedObject.load(`${buildDir}${f}`);
    results.push({ object: f, ok: true, programs: o.programNames() });
    o.close();
  } catch (e) {
    results.push({ object: f, ok: false, error: (e as Error).message, verifierTail: e instanceof VerifierError ? e.verifierLog.split('\n').slice(-15).join('\n') : undefined });
  }
}
process.stdout.write(`${JSON.stringify({ kernel: release(), features: kernelFeatures(), build, skipped, results })}\n`);
