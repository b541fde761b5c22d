// Loads every BPF object of build/bpf (not the deliberately broken fixtures) and reports, as
// one JSON line, whether this kernel's verifier accepts them, and which datapath build the agent
// would pick. The kern-ctx build is not offered to a kernel without its kfunc (the agent never
// loads it there): it is listed as skipped. Run inside the test VM.
import { readdirSync } from 'node:fs';
import { release } from 'node:os';
import { VerifierError } from '../../control/bpf/errors.ts';
import { LoadedObject } from '../../control/bpf/object.ts';
import { datapathBuild, datapathObjectPath } from '../../control/backends/ebpf/object-path.ts';
import { buildDir } from '../bpf/objects.ts';

const results: Array<{ object: string; ok: boolean; programs?: string[]; error?: string; verifierTail?: string }> = [];
const build = datapathBuild();
const skipped = build === 'kern-ctx' ? [] : [datapathObjectPath('kern-ctx', buildDir).slice(buildDir.length)];
for (const f of readdirSync(buildDir).filter((x) => x.endsWith('.o') && !skipped.includes(x)).sort()) {
  try {
    const o = LoadedObject.load(`${buildDir}${f}`);
    results.push({ object: f, ok: true, programs: o.programNames() });
    o.close();
  } catch (e) {
    results.push({ object: f, ok: false, error: (e as Error).message, verifierTail: e instanceof VerifierError ? e.verifierLog.split('\n').slice(-15).join('\n') : undefined });
  }
}
process.stdout.write(`${JSON.stringify({ kernel: release(), build, skipped, results })}\n`);
