// Which datapath build the agent loads: the kern-ctx build where the kernel has
// bpf_cast_to_kern_ctx, else the portable one; a build the kernel refuses gives way to the next
// candidate, but pins of another layout are never "fixed" by trying another build.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { u32 } from '../../control/bpf/codec.ts';
import { kernelFunctionExists } from '../../control/bpf/kernel.ts';
import { meta } from '../../control/bpf/layout.ts';
import { EbpfBackend } from '../../control/backends/ebpf/backend.ts';
import { LayoutMismatchError } from '../../control/backends/ebpf/datapath.ts';
import { datapathBuild, datapathCandidates, datapathObjectPath, KERN_CTX_KFUNC } from '../../control/backends/ebpf/object-path.ts';
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

  it('the kernel\'s BTF decides: kern-ctx with bpf_cast_to_kern_ctx, tried before the portable build', () => {
    assert.equal(kernelFunctionExists('no_such_kernel_function_sy'), false);
    const has = kernelFunctionExists(KERN_CTX_KFUNC);
    assert.equal(datapathBuild(), has ? 'kern-ctx' : 'portable');
    assert.deepEqual(datapathCandidates(), has ? [datapathObjectPath('kern-ctx'), datapathObjectPath('portable')] : [datapathObjectPath('portable')]);
  });

  it('by default the agent loads the first candidate', () => {
    const { backend, logs } = openBackend(undefined, `/sys/fs/bpf/${prefix}-default`);
    try {
      assert.ok(backend.datapath.programFd('sy_from_pod') > 0);
      assert.equal(logs.length, 1);
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
