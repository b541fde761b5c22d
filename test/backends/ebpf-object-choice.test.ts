// Which datapath build the agent loads: the kern-ctx build where the kernel has
// bpf_cast_to_kern_ctx, the portable one where it has bpf_set_retval and the coarse clock, the
// compat one everywhere (5.10+); a build the kernel refuses gives way to the next
// candidate, but pins of another layout are never "fixed" by trying another build.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { u32 } from '../../control/bpf/codec.ts';
import { kernelFunctionExists } from '../../control/bpf/kernel.ts';
import { meta } from '../../control/bpf/layout.ts';
import { EbpfBackend } from '../../control/backends/ebpf/backend.ts';
import { LayoutMismatchError } from '../../control/backends/ebpf/datapath.ts';
import { buildDegradation, buildOfObject, buildsFor, datapathBuild, datapathCandidates, datapathObjectPath, KERN_CTX_KFUNC, kernelFeatures, loadableBuilds } from '../../control/backends/ebpf/object-path.ts';
import { buildDir } from '../bpf/objects.ts';
import { runPrefix } from '../lab/names.ts';
import { teardownNamesSync } from '../lab/sweep.ts';

const prefix = `${runPrefix()}-choice`;

function openBackend(object: string | string[] | undefined, pinDir: string): { backend: EbpfBackend; logs: string[] } {
  const logs: string[] = [];
  const backend = EbpfBackend.open({ object, pinDir, podDevicePrefixes: [], externalDevices: [], log: (_f, m) => logs.push(m) });
  return { backend, logs };
}

describe('eBPF datapath build choice', () => {
  after(() => teardownNamesSync(prefix));

  it('the kernel decides: kern-ctx with bpf_cast_to_kern_ctx, portable with bpf_set_retval and the coarse clock, compat always, best first', () => {
    assert.equal(kernelFunctionExists('no_such_kernel_function_sy'), false);
    const f = kernelFeatures();
    assert.equal(f.kernCtx, kernelFunctionExists(KERN_CTX_KFUNC));
    assert.deepEqual(loadableBuilds(), buildsFor(f));
    assert.equal(datapathBuild(), loadableBuilds()[0]);
    assert.deepEqual(datapathCandidates(), loadableBuilds().map((b) => datapathObjectPath(b)));
    for (const b of loadableBuilds()) assert.equal(buildOfObject(datapathObjectPath(b)), b);
  });

  it('which builds a kernel gets, by what it has (6.2+, 5.18 to 6.1, 5.11 to 5.17, 5.10)', () => {
    const all = { kernCtx: true, setRetval: true, coarseClock: true };
    assert.deepEqual(buildsFor(all), ['kern-ctx', 'portable', 'compat']);
    assert.deepEqual(buildsFor({ ...all, kernCtx: false }), ['portable', 'compat']);
    assert.deepEqual(buildsFor({ kernCtx: false, setRetval: false, coarseClock: true }), ['compat']);
    assert.deepEqual(buildsFor({ kernCtx: false, setRetval: false, coarseClock: false }), ['compat']);
    // A backport of the kfunc without the helpers still needs the compat build.
    assert.deepEqual(buildsFor({ kernCtx: true, setRetval: false, coarseClock: true }), ['compat']);
    assert.equal(buildDegradation('portable', all), undefined);
    assert.match(buildDegradation('compat', { kernCtx: false, setRetval: false, coarseClock: false })!, /lacks bpf_set_retval \(5\.18\) and bpf_ktime_get_coarse_ns \(5\.11\).*EPERM, not ECONNREFUSED/);
  });

  it('the compat build says once what it gives up when it is loaded', () => {
    const { backend, logs } = openBackend(datapathObjectPath('compat'), `/sys/fs/bpf/${prefix}-compat`);
    try {
      assert.ok(backend.datapath.programFd('sy_sock_connect4') > 0);
      assert.equal(logs.length, 2);
      assert.match(logs[0]!, /datapath loaded/);
      assert.match(logs[1]!, /^compat datapath build.*EPERM/);
    } finally {
      backend.datapath.close();
    }
  });

  it('by default the agent loads the first candidate', () => {
    const { backend, logs } = openBackend(undefined, `/sys/fs/bpf/${prefix}-default`);
    try {
      assert.ok(backend.datapath.programFd('sy_from_pod') > 0);
      assert.equal(logs.length, datapathBuild() === 'compat' ? 2 : 1);
      assert.match(logs[0]!, /datapath loaded/);
    } finally {
      backend.datapath.close();
    }
  });

  it('a build the verifier refuses gives way to the next, and says so', () => {
    const rejected = `${buildDir}fixtures/rejected.o`;
    const { backend, logs } = openBackend([rejected, datapathObjectPath('portable')], `/sys/fs/bpf/${prefix}-fallback`);
    try {
      assert.ok(backend.datapath.programFd('sy_from_pod') > 0);
      assert.match(logs[0]!, /rejected\.o did not load; trying .*datapath\.o/);
      assert.match(logs[1]!, /datapath loaded/);
    } finally {
      backend.datapath.close();
    }
  });

  it('pins of another layout are refused at once, not retried with another build', () => {
    const pinDir = `/sys/fs/bpf/${prefix}-layout`;
    const first = openBackend(datapathObjectPath('portable'), pinDir).backend;
    first.datapath.object.map('sy_meta', u32, meta).set(0, { layoutVersion: 999 });
    first.datapath.close();
    const logs: string[] = [];
    assert.throws(
      () => EbpfBackend.open({ object: [datapathObjectPath('portable'), datapathObjectPath('portable')], pinDir, podDevicePrefixes: [], externalDevices: [], log: (_f, m) => logs.push(m) }),
      LayoutMismatchError,
    );
    assert.deepEqual(logs, []);
  });
});
