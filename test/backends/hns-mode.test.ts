// kernelspace mode is chosen by kube-proxy's name: on Linux the agent refuses it at once, saying
// it needs Windows; the winkernel section of KubeProxyConfiguration is read with kube-proxy's
// fallbacks; the mode's backend runs the HNS adapter over any HcnApi (here the in-memory one).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KernelspaceProxyBackend } from '../../control/backends/hns/proxy-backend.ts';
import { healthzPort, winkernelConfig } from '../../control/backends/hns/winkernel-config.ts';
import { agentCommand } from '../../control/cli/agent.ts';
import { decodeConfiguration } from '../../control/config/kube-proxy-config.ts';
import { emptyChanges } from './hns-changes.ts';
import { fakeHcn, guid } from './hns-fixture.ts';
import { kubeProxyTestCluster } from '../cases/kube-proxy-cluster.ts';

describe('kernelspace mode', () => {
  it('on Linux, --proxy-mode kernelspace stops with an error saying it needs Windows', async (t) => {
    if (process.platform === 'win32') return t.skip('this is Windows');
    let err = '';
    const code = await agentCommand(['--proxy-mode', 'kernelspace', '--manifests', '/nonexistent'], { stdout: () => undefined, stderr: (s: string) => (err += s) });
    assert.equal(code, 1);
    assert.match(err, /kernelspace needs Windows/);
  });

  it('reads the winkernel section, with $KUBE_NETWORK and cbr0 as kube-proxy falls back', () => {
    const loaded = decodeConfiguration('apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: kernelspace\nhealthzBindAddress: 0.0.0.0:10666\nwinkernel:\n  networkName: vxlan0\n  sourceVip: 10.244.1.2\n  enableDSR: true\n  forwardHealthCheckVip: true\n');
    assert.deepEqual(winkernelConfig(loaded.kubeProxy, {}), { networkName: 'vxlan0', sourceVip: '10.244.1.2', enableDSR: true, rootHnsEndpointName: 'cbr0', forwardHealthCheckVip: true });
    assert.equal(healthzPort(loaded.kubeProxy), 10666);
    assert.equal(winkernelConfig({}, { KUBE_NETWORK: 'cbr0' }).networkName, 'cbr0');
    assert.throws(() => winkernelConfig({}, {}), /winkernel.networkName/);
    assert.throws(() => winkernelConfig({ winkernel: { networkName: 'x', sourceVip: 'nope' } }, {}), /sourceVip/);
  });

  it('the backend syncs through the HNS adapter', async () => {
    const hcn = fakeHcn([{ id: guid(0x102), ips: ['10.180.0.2'] }]);
    const backend = new KernelspaceProxyBackend({ winkernel: winkernelConfig({ winkernel: { networkName: 'cbr0' } }, {}), minSyncPeriodMs: 0, syncPeriodMs: 30_000, healthzPort: 10256, api: hcn });
    await backend.start();
    const r = await backend.sync(kubeProxyTestCluster().state(), emptyChanges(), true);
    assert.deepEqual(r.failed, []);
    assert.ok(hcn.loadBalancers.size > 0, `${hcn.loadBalancers.size} load balancers`);
    assert.equal(backend.mode, 'kernelspace');
  });
});
