// Every KubeProxyConfiguration field (v1alpha1, walked from the decoder's schema) either changes
// what the agent runs with (agentSettings: model, backend, servers, periods, source, logging) or
// is named, with why, in the start-up warning: in every mode, for a non-default value. A field
// added to the schema and to neither fails here.
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { describe, it } from 'node:test';
import { agentSettings } from '../../control/cli/agent.ts';
import { ignoredFields, ignoredFieldsMessage, type RunMode } from '../../control/config/field-use.ts';
import { defaultKubeProxyConfiguration, defaultSwitchyardConfiguration, kubeProxyFields, type LoadedConfiguration } from '../../control/config/kube-proxy-config.ts';
import { configurationProblems } from '../../control/config/validate.ts';

type Dict = Record<string, unknown>;
const MODES: readonly RunMode[] = ['ebpf', 'iptables', 'nftables', 'ipvs', 'kernelspace'];

/** A value other than kube-proxy's default (and valid), per field. */
const NON_DEFAULT: Readonly<Record<string, unknown>> = {
  featureGates: { SomeGate: true },
  'clientConnection.kubeconfig': '/etc/kube-proxy/kubeconfig',
  'clientConnection.acceptContentTypes': 'application/json',
  'clientConnection.contentType': 'application/json',
  'clientConnection.qps': 50,
  'clientConnection.burst': 100,
  'logging.format': 'json',
  'logging.flushFrequency': '10s',
  'logging.verbosity': 4,
  'logging.vmodule': ['proxier=4'],
  'logging.options.text.infoBufferSize': '1Ki',
  'logging.options.text.splitStream': true,
  'logging.options.json.infoBufferSize': '1Ki',
  'logging.options.json.splitStream': true,
  hostnameOverride: 'node-7',
  bindAddress: '192.0.2.7',
  healthzBindAddress: '0.0.0.0:10266',
  metricsBindAddress: '127.0.0.1:10259',
  bindAddressHardFail: true,
  enableProfiling: true,
  showHiddenMetricsForVersion: '1.32',
  mode: 'iptables',
  'iptables.masqueradeBit': 13,
  'iptables.masqueradeAll': true,
  'iptables.localhostNodePorts': false,
  'iptables.syncPeriod': '45s',
  'iptables.minSyncPeriod': '2s',
  'ipvs.syncPeriod': '45s',
  'ipvs.minSyncPeriod': '2s',
  'ipvs.scheduler': 'wrr',
  'ipvs.excludeCIDRs': ['10.9.0.0/16'],
  'ipvs.strictARP': true,
  'ipvs.tcpTimeout': '900s',
  'ipvs.tcpFinTimeout': '120s',
  'ipvs.udpTimeout': '300s',
  'nftables.masqueradeBit': 13,
  'nftables.masqueradeAll': true,
  'nftables.syncPeriod': '45s',
  'nftables.minSyncPeriod': '2s',
  'winkernel.networkName': 'l2bridge',
  'winkernel.sourceVip': '10.244.1.2',
  'winkernel.enableDSR': true,
  'winkernel.rootHnsEndpointName': 'cbr1',
  'winkernel.forwardHealthCheckVip': true,
  detectLocalMode: 'InterfaceNamePrefix',
  'detectLocal.bridgeInterface': 'cbr0',
  'detectLocal.interfaceNamePrefix': 'veth',
  'detectLocal.clusterCIDRs': ['10.244.0.0/16'],
  clusterCIDR: '10.244.0.0/16',
  nodePortAddresses: ['192.0.2.0/24'],
  oomScoreAdj: -500,
  'conntrack.maxPerCore': 262144, // above min (131072) on any number of CPUs
  'conntrack.min': 262144,
  'conntrack.tcpEstablishedTimeout': '12h0m0s',
  'conntrack.tcpCloseWaitTimeout': '30m0s',
  'conntrack.tcpBeLiberal': true,
  'conntrack.udpTimeout': '30s',
  'conntrack.udpStreamTimeout': '2m0s',
  configSyncPeriod: '5m0s',
  portRange: '30000-31000',
  syncPeriod: '50s',
  minSyncPeriod: '3s',
};

function setPath(o: Dict, path: string, v: unknown): void {
  const keys = path.split('.');
  let cur = o;
  for (const k of keys.slice(0, -1)) cur = (cur[k] = (cur[k] !== null && typeof cur[k] === 'object' ? cur[k] : {}) as Dict) as Dict;
  cur[keys.at(-1)!] = v;
}

/**
 * kube-proxy's defaults, with the socket hooks on (so eBPF mode serves localhost NodePorts) and,
 * for kernelspace mode, which needs one, an HNS network named.
 */
function base(mode?: RunMode): LoadedConfiguration {
  const kubeProxy = defaultKubeProxyConfiguration();
  if (mode === 'kernelspace') setPath(kubeProxy, 'winkernel.networkName', 'base-network');
  return { kubeProxy, switchyard: { ...defaultSwitchyardConfiguration(), cgroupRoot: '/sys/fs/cgroup' } };
}

/** What a run in `mode` uses, as comparable JSON (the node name's hostname default is fixed by the base). */
const settings = (c: LoadedConfiguration, mode: RunMode): string => JSON.stringify(agentSettings(c, mode, undefined));

describe('KubeProxyConfiguration: every field has its effect or is named', () => {
  const fields = kubeProxyFields().filter((f) => f.path !== 'apiVersion' && f.path !== 'kind');

  it('the table of non-default values covers every field of the schema, and each value is valid', () => {
    assert.deepEqual(fields.map((f) => f.path).filter((p) => !(p in NON_DEFAULT)), [], 'fields without a test value');
    for (const f of fields) {
      const c = base();
      setPath(c.kubeProxy, f.path, NON_DEFAULT[f.path]);
      assert.deepEqual(configurationProblems(c), [], f.path);
    }
  });

  for (const mode of MODES) {
    it(`${mode} mode: each field set changes the agent's settings, or the start-up warning names it (never both)`, () => {
      const baseline = base(mode);
      assert.deepEqual(ignoredFields(baseline.kubeProxy, mode, baseline.switchyard).filter((i) => i.field !== 'iptables.localhostNodePorts' && i.field !== 'winkernel.networkName'), [], 'defaults: nothing to warn about but localhost NodePorts');
      const before = settings(baseline, mode);
      const silent: string[] = [];
      for (const f of fields) {
        const c = base(mode);
        setPath(c.kubeProxy, f.path, NON_DEFAULT[f.path]);
        const changed = settings(c, mode) !== before;
        const warned = ignoredFields(c.kubeProxy, mode, c.switchyard).some((i) => i.field === f.path);
        if (!changed && !warned) silent.push(f.path);
        assert.ok(!(changed && warned), `${f.path} both has an effect and is named as unused in ${mode} mode`);
      }
      assert.deepEqual(silent, [], `silently ignored in ${mode} mode`);
    });
  }

  it('the warning is one line naming each field with its reason', () => {
    const c = base();
    setPath(c.kubeProxy, 'portRange', '30000-31000');
    setPath(c.kubeProxy, 'ipvs.strictARP', true);
    const msg = ignoredFieldsMessage(ignoredFields(c.kubeProxy, 'iptables', c.switchyard), 'iptables')!;
    assert.match(msg, /^KubeProxyConfiguration fields not used in iptables mode: /);
    assert.match(msg, /portRange \(the userspace proxy's port range: there is no userspace mode\)/);
    assert.match(msg, /ipvs\.strictARP \(Switchyard does not change ARP sysctls\)/);
    assert.ok(!msg.includes('\n'));
    assert.equal(ignoredFieldsMessage(ignoredFields(base().kubeProxy, 'iptables', base().switchyard), 'iptables'), undefined, 'nothing set, nothing said');
  });

  it('localhostNodePorts: in effect in iptables mode and eBPF mode with socket hooks; named in nftables mode, and in eBPF mode without socket hooks', () => {
    const c = base();
    assert.equal(agentSettings(c, 'iptables').agent.model.localhostNodePorts, true);
    assert.equal(agentSettings(c, 'ebpf').agent.model.localhostNodePorts, true);
    assert.equal(agentSettings(c, 'nftables').agent.model.localhostNodePorts, false);
    assert.match(ignoredFields(c.kubeProxy, 'nftables', c.switchyard).find((i) => i.field === 'iptables.localhostNodePorts')!.why, /nftables mode does not serve NodePorts on localhost/);
    const noHooks = { ...c, switchyard: defaultSwitchyardConfiguration() };
    assert.equal(agentSettings(noHooks, 'ebpf').agent.model.localhostNodePorts, false);
    assert.match(ignoredFields(noHooks.kubeProxy, 'ebpf', noHooks.switchyard)[0]!.why, /cgroupRoot/);
  });

  it('masqueradeBit: iptables.masqueradeBit in iptables and ipvs modes, nftables.masqueradeBit in nftables mode', () => {
    const c = base();
    setPath(c.kubeProxy, 'iptables.masqueradeBit', 13);
    setPath(c.kubeProxy, 'nftables.masqueradeBit', 12);
    assert.deepEqual((['iptables', 'ipvs', 'nftables', 'ebpf'] as const).map((m) => agentSettings(c, m).agent.model.masqueradeBit), [13, 13, 12, 14]);
  });

  it('nodePortAddresses unset: every node address, but "primary" in nftables mode (as kube-proxy\'s nftables backend)', () => {
    const c = base();
    assert.deepEqual(agentSettings(c, 'iptables').agent.model.nodePortAddresses, []);
    assert.deepEqual(agentSettings(c, 'ebpf').agent.model.nodePortAddresses, []);
    assert.deepEqual(agentSettings(c, 'nftables').agent.model.nodePortAddresses, ['primary']);
    setPath(c.kubeProxy, 'nodePortAddresses', ['192.0.2.0/24']);
    assert.deepEqual(agentSettings(c, 'nftables').agent.model.nodePortAddresses, ['192.0.2.0/24']);
  });

  it('conntrack: the nf_conntrack sysctls in the rule modes (as kube-proxy), eBPF mode\'s own table, nothing in kernelspace mode', () => {
    const c = base();
    setPath(c.kubeProxy, 'conntrack.tcpBeLiberal', true);
    setPath(c.kubeProxy, 'conntrack.udpTimeout', '30s');
    const names = (m: RunMode): string[] => agentSettings(c, m).conntrackSysctls.map((x) => `${x.name}=${x.value}`);
    const cpus = availableParallelism();
    assert.deepEqual(names('iptables'), [`net.netfilter.nf_conntrack_max=${Math.max(32768 * cpus, 131072)}`, 'net.netfilter.nf_conntrack_tcp_timeout_established=86400', 'net.netfilter.nf_conntrack_tcp_timeout_close_wait=3600', 'net.netfilter.nf_conntrack_tcp_be_liberal=1', 'net.netfilter.nf_conntrack_udp_timeout=30']);
    assert.deepEqual(names('nftables'), names('iptables'));
    assert.deepEqual(names('ebpf'), []);
    assert.equal((agentSettings(c, 'ebpf').agent.backend as { conntrack: { udpTimeoutSeconds: number } }).conntrack.udpTimeoutSeconds, 30);
    assert.ok(ignoredFields(c.kubeProxy, 'ebpf', c.switchyard).some((i) => i.field === 'conntrack.tcpBeLiberal'));
  });

  it('the top-level syncPeriod/minSyncPeriod win over the mode section when set', () => {
    const c = base();
    setPath(c.kubeProxy, 'syncPeriod', '50s');
    setPath(c.kubeProxy, 'nftables.minSyncPeriod', '2s');
    const s = agentSettings(c, 'nftables');
    assert.equal(s.agent.syncPeriodMs, 50_000);
    assert.equal((s.agent.backend as { minSyncPeriodMs: number }).minSyncPeriodMs, 2000);
    assert.ok(ignoredFields({ ...c.kubeProxy, nftables: { ...(c.kubeProxy.nftables as Dict), syncPeriod: '40s' } }, 'nftables').some((i) => i.field === 'nftables.syncPeriod' && /top-level/.test(i.why)));
  });
});
