// The netns cookie learnt by a BPF program (kernels without SO_NETNS_COOKIE, e.g. 5.10) is the
// one the kernel gives through SO_NETNS_COOKIE, for this process's namespace and another one;
// the throwaway cgroup is gone afterwards. (The test VM's 5.10 takes the learnt path for real.)
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { native } from '../../control/bpf/native.ts';
import { cgroup2Root, learnNetnsCookie, netnsCookie } from '../../control/bpf/netns-cookie.ts';
import { run } from '../lab/exec.ts';
import { netnsPath } from '../lab/lab.ts';
import { runPrefix } from '../lab/names.ts';
import { teardownNamesSync } from '../lab/sweep.ts';

const prefix = `${runPrefix()}-cookie`;

describe('netns cookie', () => {
  before(() => run('ip', ['netns', 'add', `${prefix}-ns`]));
  after(() => teardownNamesSync(prefix));

  it('learnt by a BPF program: the same cookie SO_NETNS_COOKIE gives, per namespace', (t) => {
    let direct: bigint[];
    try {
      direct = [native().netnsCookie(undefined), native().netnsCookie(netnsPath(`${prefix}-ns`))];
    } catch (e) {
      // 5.10: no SO_NETNS_COOKIE, nothing to compare with; the learnt cookies must still differ.
      t.diagnostic(`SO_NETNS_COOKIE unavailable: ${(e as Error).message}`);
      direct = [];
    }
    const learnt = [learnNetnsCookie(), learnNetnsCookie(netnsPath(`${prefix}-ns`))];
    if (direct.length > 0) assert.deepEqual(learnt, direct);
    assert.notEqual(learnt[0], learnt[1]);
    assert.equal(netnsCookie(), learnt[0]);
    assert.equal(existsSync(`${cgroup2Root()}/switchyard-netns-cookie-${process.pid}`), false, 'the throwaway cgroup is removed');
  });
});
