// kube-proxy's configuration file: strict decoding (a wrong field is named and the agent does not
// start), kube-proxy's defaults, and --write-config-to / --config round trips.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parse } from 'yaml';
import { main } from '../../control/cli/main.ts';
import { effectiveConfiguration } from '../../control/cli/agent.ts';
import { ConfigError, decodeConfiguration } from '../../control/config/kube-proxy-config.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-config-'));

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(args, { stdout: (t) => (out += t), stderr: (t) => (err += t) });
  return { code, out, err };
}

// What kubeadm puts into the kube-proxy ConfigMap (trimmed to typical fields).
const KUBEADM = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
bindAddress: 0.0.0.0
clientConnection:
  acceptContentTypes: ""
  burst: 0
  contentType: ""
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 0
clusterCIDR: 10.244.0.0/16
configSyncPeriod: 0s
conntrack:
  maxPerCore: null
  min: null
  tcpCloseWaitTimeout: null
  tcpEstablishedTimeout: null
detectLocal:
  bridgeInterface: ""
  interfaceNamePrefix: ""
detectLocalMode: ""
enableProfiling: false
healthzBindAddress: ""
hostnameOverride: ""
iptables:
  localhostNodePorts: null
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
ipvs:
  excludeCIDRs: null
  minSyncPeriod: 0s
  scheduler: ""
  strictARP: false
  syncPeriod: 0s
  tcpFinTimeout: 0s
  tcpTimeout: 0s
  udpTimeout: 0s
metricsBindAddress: ""
mode: ""
nodePortAddresses: null
oomScoreAdj: null
portRange: ""
showHiddenMetricsForVersion: ""
winkernel:
  enableDSR: false
  forwardHealthCheckVip: false
  networkName: ""
  rootHnsEndpointName: ""
  sourceVip: ""
`;

describe('KubeProxyConfiguration', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('--write-config-to writes kube-proxy\'s defaults, and --config reads them back unchanged', async () => {
    const file = join(dir, 'defaults.yaml');
    const r = await run(['--write-config-to', file]);
    assert.equal(r.code, 0, r.err);
    const [kp] = readFileSync(file, 'utf8').split('---\n').map((d) => parse(d) as Record<string, unknown>);
    assert.equal(kp!.kind, 'KubeProxyConfiguration');
    assert.equal(kp!.healthzBindAddress, '0.0.0.0:10256');
    assert.equal(kp!.metricsBindAddress, '127.0.0.1:10249');
    assert.deepEqual(kp!.iptables, { localhostNodePorts: true, masqueradeAll: false, masqueradeBit: 14, minSyncPeriod: '1s', syncPeriod: '30s' });
    assert.deepEqual(kp!.clientConnection, { acceptContentTypes: '', burst: 10, contentType: 'application/vnd.kubernetes.protobuf', kubeconfig: '', qps: 5 });
    assert.deepEqual([kp!.configSyncPeriod, kp!.oomScoreAdj, (kp!.conntrack as Record<string, unknown>).maxPerCore, (kp!.conntrack as Record<string, unknown>).tcpEstablishedTimeout], ['15m0s', -999, 32768, '24h0m0s']);
    const again = join(dir, 'again.yaml');
    assert.equal((await run(['--config', file, '--write-config-to', again])).code, 0);
    assert.equal(readFileSync(again, 'utf8'), readFileSync(file, 'utf8'), 'round trip');
  });

  it('flags given on the command line override the file', () => {
    const file = join(dir, 'kubeadm.yaml');
    writeFileSync(file, KUBEADM);
    const c = effectiveConfiguration({ config: file, 'cluster-cidr': '10.0.0.0/8', 'hostname-override': 'n7' });
    assert.equal(c.kubeProxy.clusterCIDR, '10.0.0.0/8');
    assert.equal(c.kubeProxy.hostnameOverride, 'n7');
    assert.equal((c.kubeProxy.clientConnection as Record<string, unknown>).kubeconfig, '/var/lib/kube-proxy/kubeconfig.conf');
  });

  it('a kubeadm-generated file works unchanged', () => {
    const c = decodeConfiguration(KUBEADM);
    assert.equal(c.kubeProxy.clusterCIDR, '10.244.0.0/16');
    assert.equal(c.switchyard.kind, 'SwitchyardConfiguration');
  });

  it('an unknown field is named, and the agent does not start', async () => {
    const file = join(dir, 'typo.yaml');
    writeFileSync(file, KUBEADM.replace('  masqueradeBit: null', '  masqueradeBitt: 14'));
    assert.throws(() => decodeConfiguration(readFileSync(file, 'utf8')), (e: unknown) => e instanceof ConfigError && /unknown field "iptables\.masqueradeBitt"/.test(e.message));
    const r = await run(['--config', file, '--manifests', dir]);
    assert.equal(r.code, 1);
    assert.match(r.err, /unknown field "iptables\.masqueradeBitt"/);
  });

  it('a mistyped field is named with what it wants', () => {
    assert.throws(() => decodeConfiguration(KUBEADM.replace('  syncPeriod: 0s\nipvs', '  syncPeriod: 30\nipvs')), /iptables\.syncPeriod: want a duration/);
    assert.throws(() => decodeConfiguration(KUBEADM.replace('enableProfiling: false', 'enableProfiling: "no"')), /enableProfiling: want true or false/);
    assert.throws(() => decodeConfiguration(KUBEADM.replace('kubeproxy.config.k8s.io/v1alpha1', 'kubeproxy.config.k8s.io/v1')), /apiVersion/);
  });

  it('Switchyard\'s own settings live in their own document and are checked as strictly', () => {
    const c = decodeConfiguration(`${KUBEADM}---\napiVersion: switchyard.io/v1alpha1\nkind: SwitchyardConfiguration\nloadBalancing: {algorithm: maglev}\nexternalDevices: [eth0]\n`);
    assert.deepEqual([(c.switchyard.loadBalancing as Record<string, unknown>).algorithm, c.switchyard.externalDevices, c.switchyard.bpffsDir], ['maglev', ['eth0'], '/sys/fs/bpf/switchyard']);
    assert.throws(() => decodeConfiguration(`${KUBEADM}---\napiVersion: switchyard.io/v1alpha1\nkind: SwitchyardConfiguration\nbpfDir: /x\n`), /unknown field "bpfDir"/);
  });
});
