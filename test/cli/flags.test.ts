// The command line as kube-proxy's users write it: pflag's syntax, kube-proxy's DaemonSet
// argument lists, --help of every command against the flag table, docs/flags.md current,
// --version, and errors that name the flag (never the first argument).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { effectiveConfiguration } from '../../control/cli/agent.ts';
import { AGENT_FLAGS, COMMAND_FLAGS, flagHasEffectPath, unusedFlagsGiven } from '../../control/cli/agent-flags.ts';
import { COMMANDS, flagsDoc, VERSION } from '../../control/cli/commands.ts';
import { FLAGS_DOC_PATH } from '../../control/cli/flags-doc.ts';
import { FlagError, parseFlags, type FlagSpec } from '../../control/cli/flags.ts';
import { main } from '../../control/cli/main.ts';
import { validateConfiguration } from '../../control/config/validate.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-flags-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(args, { stdout: (t) => (out += t), stderr: (t) => (err += t) });
  return { code, out, err };
}

describe('pflag semantics', () => {
  const parse = (...argv: string[]) => parseFlags(argv, AGENT_FLAGS);

  it('takes --flag=value and --flag value, bare booleans and --bool=true|false', () => {
    const p = parse('--kubeconfig=/a', '--master', 'https://h', '--masquerade-all', '--cleanup=false', '--bind-address-hard-fail=true', '--profiling=F');
    assert.equal(p.values.get('kubeconfig'), '/a');
    assert.equal(p.values.get('master'), 'https://h');
    assert.equal(p.values.get('masquerade-all'), true);
    assert.equal(p.values.get('cleanup'), false);
    assert.equal(p.values.get('bind-address-hard-fail'), true);
    assert.equal(p.values.get('profiling'), false);
  });

  it('a bare boolean does not swallow the next argument', () => {
    const p = parse('--masquerade-all', 'extra');
    assert.equal(p.values.get('masquerade-all'), true);
    assert.deepEqual(p.args, ['extra']);
  });

  it('-v 2, -v=2, -v2 and --v=2 are the same; --v takes integers only', () => {
    for (const argv of [['-v', '2'], ['-v=2'], ['-v2'], ['--v=2'], ['--v', '2']]) assert.equal(parse(...argv).values.get('v'), 2, argv.join(' '));
    assert.throws(() => parse('--v=abc'), (e: Error) => e instanceof FlagError && e.message === 'invalid argument "abc" for "-v, --v" flag: want an integer');
  });

  it('lists take repeats and commas; maps take key=bool pairs', () => {
    const p = parse('--cluster-cidr=10.0.0.0/8', '--cluster-cidr', 'fd00::/48', '--nodeport-addresses=10.1.0.0/16, 10.2.0.0/16', '--feature-gates=A=true,B=false', '--feature-gates', 'C=1');
    assert.deepEqual(p.values.get('cluster-cidr'), ['10.0.0.0/8', 'fd00::/48']);
    assert.deepEqual(p.values.get('nodeport-addresses'), ['10.1.0.0/16', '10.2.0.0/16']);
    assert.deepEqual(p.values.get('feature-gates'), { A: true, B: false, C: true });
    assert.throws(() => parse('--feature-gates=A'), /want key=true\|false pairs/);
  });

  it('enums list their valid values; durations and numbers are checked', () => {
    assert.throws(() => parse('--proxy-mode', 'ebfp'), { message: 'invalid argument "ebfp" for "--proxy-mode" flag: valid values are ebpf, nftables, iptables, ipvs, auto' });
    assert.throws(() => parse('--logging-format=yaml'), /valid values are text, json/);
    assert.throws(() => parse('--detect-local-mode=cluster'), /valid values are ClusterCIDR, NodeCIDR, BridgeInterface, InterfaceNamePrefix, None/);
    assert.throws(() => parse('--iptables-sync-period=30'), /want a duration/);
    assert.equal(parse('--iptables-sync-period=1h30m').values.get('iptables-sync-period'), '1h30m');
    assert.throws(() => parse('--kube-api-qps=fast'), /want a number/);
    assert.throws(() => parse('--cleanup=yes'), /want true or false/);
  });

  it('deprecated flags are accepted with pflag\'s warning', () => {
    const p = parse('--healthz-port=10300');
    assert.equal(p.values.get('healthz-port'), 10300);
    assert.deepEqual(p.warnings, ['Flag --healthz-port has been deprecated, This flag is deprecated and will be removed in a future release. Please use --healthz-bind-address instead.']);
  });

  it('refuses unknown flags and a missing value by name; -- ends the flags', () => {
    assert.throws(() => parse('--bogus=1'), { message: 'unknown flag: --bogus' });
    assert.throws(() => parse('-x'), { message: "unknown shorthand flag: 'x' in -x" });
    assert.throws(() => parse('--config'), { message: 'flag needs an argument: --config' });
    assert.deepEqual(parse('--', '--v=3').args, ['--v=3']);
  });
});

/** A value for the flag other than its default, to see it land in the configuration. */
function sample(s: FlagSpec): string {
  if (s.type === 'bool') return s.default === 'true' ? 'false' : 'true';
  if (s.type === 'enum') return s.values!.find((v) => v !== s.default)!;
  if (s.type === 'duration') return '7s';
  if (s.type === 'int' || s.type === 'float') return s.name.endsWith('port') ? '10777' : '7';
  if (s.type === 'mapStringBool') return 'SomeGate=true';
  if (s.type === 'strings') return s.name === 'ip-families' ? '4' : s.name.endsWith('cidr') || s.name.endsWith('cidrs') || s.name.endsWith('addresses') ? '10.7.0.0/16' : 'eth7';
  if (s.placeholder === 'ip') return '10.0.0.7';
  if (s.placeholder === 'ipport') return '127.0.0.1:10777';
  return s.name === 'bpffs-dir' || s.name === 'cgroup-root' ? '/seven' : 'seven';
}

describe('the agent\'s flag table', () => {
  it("holds kube-proxy's whole flag set", () => {
    // cmd/kube-proxy/app/options.go (v1.33) AddFlags, logsapi.AddFlags, cobra's --help and verflag's --version.
    const kubeProxy = ['config', 'write-config-to', 'cleanup', 'feature-gates', 'kubeconfig', 'master', 'kube-api-content-type', 'kube-api-burst', 'kube-api-qps', 'hostname-override', 'bind-address', 'healthz-bind-address', 'metrics-bind-address', 'bind-address-hard-fail', 'profiling', 'show-hidden-metrics-for-version', 'init-only', 'proxy-mode', 'iptables-masquerade-bit', 'masquerade-all', 'iptables-localhost-nodeports', 'iptables-sync-period', 'iptables-min-sync-period', 'ipvs-sync-period', 'ipvs-min-sync-period', 'ipvs-scheduler', 'ipvs-exclude-cidrs', 'ipvs-strict-arp', 'ipvs-tcp-timeout', 'ipvs-tcpfin-timeout', 'ipvs-udp-timeout', 'detect-local-mode', 'pod-bridge-interface', 'pod-interface-name-prefix', 'cluster-cidr', 'nodeport-addresses', 'oom-score-adj', 'conntrack-max-per-core', 'conntrack-min', 'conntrack-tcp-timeout-established', 'conntrack-tcp-timeout-close-wait', 'conntrack-tcp-be-liberal', 'conntrack-udp-timeout', 'conntrack-udp-timeout-stream', 'config-sync-period', 'healthz-port', 'metrics-port', 'v', 'vmodule', 'logging-format', 'log-flush-frequency', 'log-text-split-stream', 'log-text-info-buffer-size', 'log-json-split-stream', 'log-json-info-buffer-size', 'help', 'version'];
    const ours = AGENT_FLAGS.filter((s) => s.origin === 'kube-proxy').map((s) => s.name);
    assert.deepEqual([...ours].sort(), [...kubeProxy].sort());
  });

  it('every flag is mapped onto the configuration, read by the command, or says why it is not used', () => {
    for (const s of AGENT_FLAGS) assert.ok(flagHasEffectPath(s.name), `--${s.name} has no effect and no reason`);
    const defaults = JSON.stringify(effectiveConfiguration({}));
    for (const s of AGENT_FLAGS) {
      if (COMMAND_FLAGS.has(s.name)) continue;
      const values = parseFlags([`--${s.name}=${sample(s)}`], AGENT_FLAGS).values;
      assert.notEqual(JSON.stringify(effectiveConfiguration(values)), defaults, `--${s.name}=${sample(s)} changed nothing`);
    }
  });

  it('the deprecated port flags replace the port, or turn the server off with 0', () => {
    const c = effectiveConfiguration(parseFlags(['--healthz-port=10300', '--metrics-port=0'], AGENT_FLAGS).values).kubeProxy;
    assert.equal(c.healthzBindAddress, '0.0.0.0:10300');
    assert.equal(c.metricsBindAddress, '');
  });
});

// kube-proxy's argument lists as the installers write them ($(NODE_NAME) expanded, as the kubelet does).
const KUBEADM_CONFIG = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
bindAddress: 0.0.0.0
clientConnection:
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
clusterCIDR: 10.244.0.0/16
configSyncPeriod: 0s
mode: ""
nodePortAddresses: null
`;
const EKS_CONFIG = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
bindAddress: 0.0.0.0
clientConnection:
  acceptContentTypes: ""
  burst: 10
  contentType: application/vnd.kubernetes.protobuf
  kubeconfig: /var/lib/kube-proxy/kubeconfig
  qps: 5
clusterCIDR: ""
configSyncPeriod: 15m0s
conntrack:
  maxPerCore: 32768
  min: 131072
  tcpCloseWaitTimeout: 1h0m0s
  tcpEstablishedTimeout: 24h0m0s
enableProfiling: false
healthzBindAddress: 0.0.0.0:10256
hostnameOverride: ""
iptables:
  masqueradeAll: false
  masqueradeBit: 14
  minSyncPeriod: 0s
  syncPeriod: 30s
ipvs:
  excludeCIDRs: null
  minSyncPeriod: 0s
  scheduler: ""
  syncPeriod: 30s
kind: KubeProxyConfiguration
metricsBindAddress: 0.0.0.0:10249
mode: "iptables"
nodePortAddresses: null
oomScoreAdj: -998
portRange: ""
`;

const DAEMONSETS: Record<string, { args: string[]; config?: string; expect: Record<string, unknown> }> = {
  // kubeadm's kube-proxy DaemonSet (cmd/kubeadm/app/phases/addons/proxy): the ConfigMap and the node name.
  kubeadm: { args: ['--config=CONFIG', '--hostname-override=node-1'], config: KUBEADM_CONFIG, expect: { hostnameOverride: 'node-1', clusterCIDR: '10.244.0.0/16' } },
  // kops (nodeup's kube-proxy manifest, built from the cluster spec's kubeProxy section).
  kops: {
    args: ['--cluster-cidr=100.96.0.0/11', '--conntrack-max-per-core=131072', '--hostname-override=i-0123456789abcdef0', '--kubeconfig=/var/lib/kube-proxy/kubeconfig', '--master=https://api.internal.example.k8s.local', '--oom-score-adj=-998', '--v=2'],
    expect: { clusterCIDR: '100.96.0.0/11', oomScoreAdj: -998, hostnameOverride: 'i-0123456789abcdef0' },
  },
  // EKS's kube-proxy add-on DaemonSet with its kube-proxy-config ConfigMap.
  eks: { args: ['--v=2', '--config=CONFIG', '--hostname-override=ip-192-168-1-10.ec2.internal'], config: EKS_CONFIG, expect: { mode: 'iptables', metricsBindAddress: '0.0.0.0:10249' } },
  // GKE's kube-proxy static pod (cluster/gce's kube-proxy manifest parameters).
  gke: {
    args: ['--master=https://10.128.0.2', '--kubeconfig=/var/lib/kube-proxy/kubeconfig', '--cluster-cidr=10.4.0.0/14', '--oom-score-adj=-998', '--v=2', '--iptables-sync-period=1m', '--iptables-min-sync-period=10s', '--ipvs-sync-period=1m', '--ipvs-min-sync-period=10s', '--feature-gates=DisableCloudProviders=true', '--detect-local-mode=NodeCIDR'],
    expect: { detectLocalMode: 'NodeCIDR', clusterCIDR: '10.4.0.0/14' },
  },
  // AKS's kube-proxy DaemonSet arguments (flags, no config file).
  aks: {
    args: ['--conntrack-max-per-core=0', '--metrics-bind-address=0.0.0.0:10249', '--cluster-cidr=10.244.0.0/16', '--detect-local-mode=ClusterCIDR', '--pod-interface-name-prefix=', '--v=3', '--hostname-override=aks-nodepool1-12345678-vmss000000', '--kubeconfig=/var/lib/kubelet/kubeconfig'],
    expect: { metricsBindAddress: '0.0.0.0:10249', detectLocalMode: 'ClusterCIDR' },
  },
};

describe("kube-proxy's DaemonSet argument lists", () => {
  for (const [name, d] of Object.entries(DAEMONSETS)) {
    it(`${name}: parse, validate, and each flag is used or named in the warning`, () => {
      const file = join(dir, `${name}.conf`);
      if (d.config !== undefined) writeFileSync(file, d.config);
      const parsed = parseFlags(d.args.map((a) => a.replace('CONFIG', file)), AGENT_FLAGS);
      assert.deepEqual(parsed.args, []);
      const c = effectiveConfiguration(parsed.values);
      validateConfiguration(c);
      for (const [k, v] of Object.entries(d.expect)) assert.deepEqual(c.kubeProxy[k], v, `${name}: ${k}`);
      const unused = new Set(unusedFlagsGiven(parsed.values).map((s) => s.name));
      for (const flag of parsed.values.keys()) {
        const spec = AGENT_FLAGS.find((s) => s.name === flag)!;
        if (spec.unused !== undefined) assert.ok(unused.has(flag), `${name}: --${flag} is not named in the warning`);
        else assert.ok(flagHasEffectPath(flag), `${name}: --${flag} has no effect`);
      }
    });
  }
});

describe('help, version and errors', () => {
  it('--help of every command lists every flag it takes', async () => {
    for (const c of COMMANDS) {
      const r = await run(c.name === 'agent' ? ['--help'] : [c.name, '--help']);
      assert.equal(r.code, 0, r.err);
      for (const f of c.flags) assert.match(r.out, new RegExp(`(^|\\s)--${f.name}(\\s|$)`, 'm'), `${c.name} --help lacks --${f.name}`);
    }
    assert.match((await run(['--help'])).out, /commands:\n {2}agent/);
  });

  it('docs/flags.md is what the table renders (npm run docs:flags)', () => {
    assert.equal(readFileSync(FLAGS_DOC_PATH, 'utf8'), flagsDoc());
    for (const c of COMMANDS) for (const f of c.flags) assert.ok(flagsDoc().includes(`\`--${f.name}\``), `docs lack --${f.name}`);
  });

  it('--version and the version command', async () => {
    assert.equal((await run(['--version'])).out, `switchyard ${VERSION}\n`);
    assert.equal((await run(['version'])).out, `switchyard ${VERSION}\n`);
  });

  it('errors name the flag, not the first argument, and exit 2 with the usage line', async () => {
    const r = await run(['--v=abc', '--manifests', '/nonexistent']);
    assert.equal(r.code, 2);
    assert.equal(r.err.split('\n')[0], 'switchyard: invalid argument "abc" for "-v, --v" flag: want an integer');
    assert.match(r.err.split('\n')[1]!, /^usage: switchyard/);
    const t = await run(['trace', '--proxy-mode', 'bogus']);
    assert.equal(t.code, 2);
    assert.match(t.err, /^switchyard trace: invalid argument "bogus" for "--proxy-mode" flag: valid values are ebpf, nftables, iptables, ipvs\n/);
  });

  it('--write-config-to refuses a configuration whose values are wrong, naming the field', async () => {
    const file = join(dir, 'bad.conf');
    writeFileSync(file, 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ebfp\n');
    const out = join(dir, 'out.conf');
    const r = await run(['--config', file, '--write-config-to', out]);
    assert.equal(r.code, 1);
    assert.match(r.err, /^switchyard: invalid configuration: mode: "ebfp" is not one of ebpf, nftables, iptables, ipvs, auto\n$/);
  });
});

describe('npm run demo', () => {
  const DEMO = new URL('../lab/demo.ts', import.meta.url).pathname;
  const demo = (args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    new Promise((resolve) => execFile(process.execPath, [DEMO, ...args], (e, stdout, stderr) => resolve({ code: e === null ? 0 : (e.code as number), stdout, stderr })));

  it('--help prints the usage; --duration abc is refused before any lab is built', async () => {
    const help = await demo(['--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^usage: npm run demo -- \[--duration SECONDS\]/);
    assert.match(help.stdout, /--duration seconds/);
    const bad = await demo(['--duration', 'abc']);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr, 'demo: invalid argument "abc" for "--duration" flag: want a number\nusage: npm run demo -- [--duration SECONDS] [--connections N]\n');
    assert.equal((await demo(['--duration=0'])).code, 2);
  });
});
