// A process on the node connecting to (or sending to) a Service without endpoints, through the
// cgroup socket hooks of every build this kernel loads: the builds with bpf_set_retval (5.18+)
// refuse with ECONNREFUSED, as kube-proxy's REJECT does; the compat build (5.10 to 5.17) cannot
// pick the error and the call fails with EPERM, which the agent says once when it loads that
// build. Runs here and inside the test VM (test/vm), where 5.10 has only the compat build.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cgroupDetach, type CgroupAttachType } from '../../control/bpf/attach.ts';
import { datapathObjectPath, kernelFeatures, loadableBuilds } from '../../control/backends/ebpf/object-path.ts';
import { Lab } from '../lab/lab.ts';
import { programNode } from './ebpf-lab.ts';

const NO_ENDPOINTS = '10.96.0.40'; // the semantic cluster's service without endpoints (REJECT)
const HOOKS = ['connect4', 'connect6', 'sendmsg4', 'sendmsg6', 'recvmsg4', 'recvmsg6', 'getpeername4', 'getpeername6'] as const;

describe('eBPF socket hooks: a connect to a Service without endpoints is refused', () => {
  let lab: Lab;

  before(async () => {
    lab = await Lab.create({ nodes: 1, podsPerNode: 1, ports: [8080] });
  });
  after(async () => {
    await lab?.teardown();
  });

  it('the kernel probe agrees with the builds offered', () => {
    const f = kernelFeatures();
    assert.equal(loadableBuilds().includes('portable'), f.setRetval && f.coarseClock);
    assert.equal(loadableBuilds().at(-1), 'compat');
  });

  for (const build of loadableBuilds()) {
    const expected = build === 'compat' ? 'EPERM' : 'ECONNREFUSED';
    it(`${build} build: TCP and UDP get ${expected}`, async () => {
      const n = lab.nodes[0]!;
      const p = programNode(lab, n, undefined, datapathObjectPath(build));
      try {
        const results = await lab.probe(n.netns, {
          targets: [{ proto: 'tcp', host: NO_ENDPOINTS, port: 80 }, { proto: 'udp', host: NO_ENDPOINTS, port: 53 }],
          timeoutMs: 2000,
          cgroup: p.cgroup,
        });
        assert.deepEqual(results.map((r) => (r.ok ? `answer from ${r.reply.pod}` : r.error)), [expected, expected]);
      } finally {
        for (const hook of HOOKS) cgroupDetach(p.cgroup, hook as CgroupAttachType, p.datapath.programFd(`sy_sock_${hook}`));
        p.datapath.close();
      }
    });
  }
});
