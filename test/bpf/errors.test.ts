// Every way the walking skeleton can fail comes back as a clear, typed error.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tcAttach, xdpAttach } from '../../control/bpf/attach.ts';
import { BpfError, BpffsMissingError, InterfaceNotFoundError, ObjectFileError, VerifierError } from '../../control/bpf/errors.ts';
import { LoadedObject } from '../../control/bpf/object.ts';
import { runPrefix } from '../lab/names.ts';
import { teardownNamesSync } from '../lab/sweep.ts';
import { rejectedObject, skeletonObject } from './objects.ts';

const prefix = `${runPrefix()}-errors`;

describe('typed errors', () => {
  let obj: LoadedObject;

  before(() => {
    obj = LoadedObject.load(skeletonObject, { pinDir: `/sys/fs/bpf/${prefix}` });
  });

  after(() => {
    obj?.close();
    teardownNamesSync(prefix);
  });

  it('a missing object file is an ObjectFileError with ENOENT', () => {
    assert.throws(
      () => LoadedObject.load('/nonexistent/switchyard.o'),
      (e: unknown) => e instanceof ObjectFileError && e.code === 'ENOENT' && e.errno === 2 && /switchyard\.o/.test(e.message),
    );
  });

  it('a program the verifier rejects is a VerifierError carrying the verifier log', () => {
    assert.throws(
      () => LoadedObject.load(rejectedObject),
      (e: unknown) => {
        assert.ok(e instanceof VerifierError, `got ${String(e)}`);
        assert.equal(e.code, 'EACCES');
        assert.match(e.verifierLog, /invalid mem access 'map_value_or_null'/);
        return true;
      },
    );
  });

  it('a bad interface name is an InterfaceNotFoundError naming the interface', () => {
    const progFd = obj.programFd('sy_skel_tc_ingress');
    assert.throws(
      () => tcAttach({ ifname: 'sy-no-such-if', direction: 'ingress', progFd }),
      (e: unknown) => e instanceof InterfaceNotFoundError && e.code === 'ENODEV' && /sy-no-such-if/.test(e.message),
    );
    assert.throws(
      () => xdpAttach({ ifname: 'sy-no-such-if', progFd: obj.programFd('sy_skel_xdp') }),
      (e: unknown) => e instanceof InterfaceNotFoundError,
    );
    assert.throws(
      () => tcAttach({ ifname: 'lo', netns: '/run/netns/sy-no-such-netns', direction: 'ingress', progFd }),
      (e: unknown) => e instanceof InterfaceNotFoundError && /network namespace/.test(e.message),
    );
  });

  it('a pin directory outside bpffs is a BpffsMissingError that says how to fix it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-'));
    try {
      assert.throws(
        () => LoadedObject.load(skeletonObject, { pinDir: join(dir, 'pins') }),
        (e: unknown) => e instanceof BpffsMissingError && /mount -t bpf/.test(e.message),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('kernel refusals keep errno and the failing call', () => {
    const frontends = obj.mapDescription('skel_frontends');
    assert.throws(
      () => obj.map('skel_frontends', { size: frontends.keySize, align: 1, encodeInto: () => undefined, decodeFrom: () => 0 }, { size: 3, align: 1, encodeInto: () => undefined, decodeFrom: () => 0 }),
      /codecs are 8\/3 bytes/,
    );
    assert.throws(
      () => tcAttach({ ifname: 'lo', direction: 'ingress', progFd: obj.programFd('sy_skel_xdp') }),
      (e: unknown) => e instanceof BpfError && e.op === 'bpf_tc_attach' && e.errno > 0,
    );
  });
});
