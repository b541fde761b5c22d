// kube-proxy's conntrack section and Switchyard's snatPorts, as the eBPF datapath takes them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { conntrackEntries, conntrackTimeouts, DEFAULT_TIMEOUTS } from '../../control/backends/ebpf/conntrack.ts';
import { conntrackOf, snatPortsOf } from '../../control/cli/agent.ts';

const S = 1_000_000_000n;

describe('conntrack settings for the eBPF datapath', () => {
  it('kube-proxy\'s conntrack.* set the timeouts; 0 keeps the kernel\'s', () => {
    const c = conntrackOf({ conntrack: { maxPerCore: 1000, min: 5000, tcpEstablishedTimeout: '2h0m0s', tcpCloseWaitTimeout: '10m', udpTimeout: '45s', udpStreamTimeout: '0s' } });
    assert.deepEqual(c, { maxPerCore: 1000, min: 5000, tcpEstablishedTimeoutSeconds: 7200, tcpCloseWaitTimeoutSeconds: 600, udpTimeoutSeconds: 45, udpStreamTimeoutSeconds: 0 });
    const t = conntrackTimeouts(c);
    assert.deepEqual([t.tcpEstablishedNs, t.tcpCloseWaitNs, t.udpNs, t.udpStreamNs, t.tcpSynNs, t.tcpClosedNs], [7200n * S, 600n * S, 45n * S, DEFAULT_TIMEOUTS.udpStreamNs, 120n * S, 120n * S]);
  });

  it('table size follows kube-proxy\'s nf_conntrack_max rule, two entries per flow', () => {
    assert.equal(conntrackEntries({}, 2), 2 * 131072, 'min wins on 2 CPUs');
    assert.equal(conntrackEntries({ maxPerCore: 32768 }, 8), 2 * 262144, 'maxPerCore x CPUs on 8');
  });

  it('snatPorts is MIN-MAX within 1-65535', () => {
    assert.deepEqual(snatPortsOf(undefined), { min: 1024, max: 65535 });
    assert.deepEqual(snatPortsOf('40000-50000'), { min: 40000, max: 50000 });
    for (const bad of ['5-4', '0-10', '1-70000', 'x']) assert.throws(() => snatPortsOf(bad), /snatPorts/);
  });
});
