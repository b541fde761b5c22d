// Loading on a worker thread: the datapath's verification (seconds on a loaded node) leaves the
// event loop running, its failures come back typed as from the synchronous load, and the object
// refuses to be used while the kernel verifies it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { datapathObjectPath } from '../../control/backends/ebpf/object-path.ts';
import { BpfError, VerifierError } from '../../control/bpf/errors.ts';
import { native } from '../../control/bpf/native.ts';
import { LoadedObject } from '../../control/bpf/object.ts';
import { runPrefix } from '../lab/names.ts';
import { teardownNamesSync } from '../lab/sweep.ts';
import { rejectedObject, skeletonObject } from './objects.ts';

const prefix = `${runPrefix()}-loadasync`;

/** Event-loop turns (setImmediate callbacks run) until `p` settles. */
async function turnsWhile<T>(p: Promise<T>): Promise<{ value: T; turns: number }> {
  let turns = 0;
  let done = false;
  const spin = (): void => {
    if (done) return;
    turns++;
    setImmediate(spin);
  };
  setImmediate(spin);
  try {
    return { value: await p, turns };
  } finally {
    done = true;
  }
}

describe('loadAsync', () => {
  after(() => teardownNamesSync(prefix));

  it('verifies the datapath with the event loop running, children exiting meanwhile (SIGCHLD)', async () => {
    let exited = 0;
    const children = Array.from({ length: 8 }, () => spawn('true').on('exit', () => exited++));
    const { value: obj, turns } = await turnsWhile(LoadedObject.loadAsync(datapathObjectPath(), { pinDir: `/sys/fs/bpf/${prefix}-dp` }));
    try {
      // A load on the JavaScript thread would let no turn run until it returned.
      assert.ok(turns > 10, `only ${turns} event-loop turns ran while the datapath loaded`);
      assert.ok(obj.programNames().length > 5);
      assert.ok(obj.programFd(obj.programNames()[0]!) > 0);
      assert.ok(obj.mapNames().includes('sy_frontends'));
    } finally {
      obj.unpinMaps();
      obj.close();
    }
    await Promise.all(children.map((c) => (c.exitCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
    assert.equal(exited, children.length);
  });

  it('a program the verifier rejects is a VerifierError carrying the log captured on the worker thread', async () => {
    await assert.rejects(LoadedObject.loadAsync(rejectedObject), (e: unknown) => {
      assert.ok(e instanceof VerifierError, `got ${String(e)}`);
      assert.equal(e.code, 'EACCES');
      assert.match(e.verifierLog, /invalid mem access 'map_value_or_null'/);
      return true;
    });
  });

  it('the object is busy while it loads, and a close meanwhile ends the load with EBADF', async () => {
    const handle = new (native().BpfObject)(skeletonObject);
    const loading = handle.loadAsync();
    assert.throws(() => handle.maps(), (e: unknown) => e instanceof Error && /EBUSY|busy|loading/i.test(e.message));
    assert.throws(() => handle.loadAsync(), (e: unknown) => e instanceof Error && /loading/.test(e.message));
    handle.close();
    await assert.rejects(loading, (e: unknown) => e instanceof Error && (e as BpfError).code === 'EBADF' && /closed while loading/.test(e.message));
    assert.throws(() => handle.maps(), (e: unknown) => e instanceof Error && /closed/.test(e.message));
  });

  it('a second load of a loaded object is refused', async () => {
    const handle = new (native().BpfObject)(skeletonObject);
    try {
      await handle.loadAsync();
      assert.ok(handle.programs().every((p) => p.fd > 0));
      assert.throws(() => handle.loadAsync(), (e: unknown) => e instanceof Error && /loaded already/.test(e.message));
    } finally {
      handle.close();
    }
  });
});
