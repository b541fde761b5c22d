// Errors of the inspect commands and of a refused load name the cause: pins that are not there,
// pins that are there but not ours to read (a non-root user), and the capabilities bpf() needed.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { BpfError } from '../../control/bpf/errors.ts';
import { explain } from '../../control/cli/explain.ts';
import { runPrefix } from '../lab/names.ts';

const MAIN = fileURLToPath(new URL('../../control/cli/main.ts', import.meta.url));
const dir = `/sys/fs/bpf/${runPrefix()}-perm`;

describe('errors that name the cause', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('services as a user who may not read the pins says permission denied, not "not pinned"', async () => {
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o700);
    const r = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', process.execPath, MAIN, 'services', '--bpffs-dir', dir, '--agent', 'none'], (e, _out, stderr) => resolve({ code: e === null ? 0 : (e.code as number), stderr })),
    );
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr, `switchyard services: ${dir}/sy_frontends: permission denied (the pins are root's: run as root, or with CAP_BPF and read access to ${dir})\n`);
  });

  it('a bpf() call the kernel refuses names the capabilities', () => {
    const e = new BpfError('bpf_object__load: Operation not permitted', 'bpf_object__load', 1, 'EPERM');
    assert.equal(explain(e), 'bpf_object__load: Operation not permitted: permission denied, needs root, or CAP_BPF and CAP_NET_ADMIN (with CAP_SYS_ADMIN for the BPF filesystem and network namespaces)');
    assert.equal(explain(new Error('map full')), 'map full');
  });
});
