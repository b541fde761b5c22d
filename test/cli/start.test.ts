// The agent's start and stop as an operator meets them: a busy health port (kube-proxy still
// running) ends the start with one line and exit 1, before anything is pinned; no source is a
// usage error (exit 2); a bad kubeconfig or manifests directory is named before the kernel is
// touched; logs are klog text by default and JSON on request; SIGTERM leaves no child behind.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { main } from '../../control/cli/main.ts';
import { u8 } from '../../control/bpf/codec.ts';
import { serviceCidrKey } from '../../control/bpf/layout.ts';
import { BpfMap } from '../../control/bpf/map.ts';
import { writeManifests } from '../cases/manifests.ts';
import { runPrefix } from '../lab/names.ts';
import { until } from '../wait.ts';

const MAIN = fileURLToPath(new URL('../../control/cli/main.ts', import.meta.url));
const GET = fileURLToPath(new URL('../lab/http-get.ts', import.meta.url));
const KLOG = /^[IWEF]\d{4} \d{2}:\d{2}:\d{2}\.\d{6} +\d+ [\w.-]+:\d+\] "/;

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(args, { stdout: (t) => (out += t), stderr: (t) => (err += t) });
  return { code, out, err };
}

interface Exited {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function exited(child: ChildProcess, out: { stdout: string; stderr: string }, started: number): Promise<Exited> {
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, ...out, ms: Date.now() - started })));
}

function start(args: string[], wrap: string[] = []): { child: ChildProcess; out: { stdout: string; stderr: string }; done: Promise<Exited> } {
  const started = Date.now();
  const [cmd, ...pre] = wrap.length > 0 ? wrap : [process.execPath];
  const child = spawn(cmd!, [...pre, ...(wrap.length > 0 ? [process.execPath] : []), MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '' };
  child.stdout!.on('data', (d: Buffer) => (out.stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out.stderr += d.toString()));
  return { child, out, done: exited(child, out, started) };
}

/** Pids of the processes whose parent is `pid`. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

const alive = (pid: number): boolean => existsSync(`/proc/${pid}`);

describe('agent start and stop', () => {
  const prefix = `${runPrefix()}-start`;
  let manifests: string;
  let busy: Server;
  let busyPort: number;
  const pinDirs: string[] = [];
  const pins = (name: string): string => {
    const d = `/sys/fs/bpf/${prefix}-${name}`;
    pinDirs.push(d);
    return d;
  };
  const children: ChildProcess[] = [];
  const files: string[] = [];

  before(async () => {
    manifests = writeManifests();
    busy = createServer();
    await new Promise<void>((r) => busy.listen({ host: '127.0.0.1', port: 0 }, r));
    busyPort = (busy.address() as { port: number }).port;
  });

  after(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    busy.close();
    rmSync(manifests, { recursive: true, force: true });
    for (const d of pinDirs) rmSync(d, { recursive: true, force: true });
    for (const f of files) rmSync(f, { force: true });
  });

  it('a busy health port: exit 1 with one line naming the address, nothing pinned or running', async () => {
    const dir = pins('busy');
    const a = start(['--manifests', manifests, '--hostname-override', 'n0', '--healthz-bind-address', `127.0.0.1:${busyPort}`, '--metrics-bind-address', '127.0.0.1:0', '--bpffs-dir', dir, '--ipvs-strict-arp=true']);
    children.push(a.child);
    const r = await a.done;
    assert.equal(r.code, 1, r.stderr);
    const lines = r.stderr.trimEnd().split('\n');
    const problems = lines.filter((l) => !KLOG.test(l));
    assert.deepEqual(problems, [`switchyard: serving health checks on 127.0.0.1:${busyPort}: address already in use (is kube-proxy or another agent still running?)`]);
    // The one other line: the warning naming the flag Switchyard does not use, in klog's text format.
    assert.match(r.stderr, /^W\d{4} .* "flags accepted but not used by Switchyard: --ipvs-strict-arp \(/m);
    assert.equal(existsSync(dir), false, 'nothing pinned');
    assert.deepEqual(childrenOf(a.child.pid!), []);
    process.stdout.write(`# busy port: exited ${r.code} after ${r.ms} ms (node start-up included)\n`);
  });

  it('with --bind-address-hard-fail an address that is not local is fatal too', async () => {
    const dir = pins('hardfail');
    const a = start(['--manifests', manifests, '--healthz-bind-address', '192.0.2.1:10256', '--metrics-bind-address', '', '--bind-address-hard-fail', '--bpffs-dir', dir]);
    children.push(a.child);
    const r = await a.done;
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr, 'switchyard: serving health checks on 192.0.2.1:10256: EADDRNOTAVAIL\n');
    assert.equal(existsSync(dir), false);
  });

  it('no source at all: exit 2 with the usage line, no fallback to localhost:8080', async () => {
    const saved = process.env.KUBERNETES_SERVICE_HOST;
    delete process.env.KUBERNETES_SERVICE_HOST;
    try {
      const r = await run(['--hostname-override', 'n0', '--bpffs-dir', pins('nosource')]);
      assert.equal(r.code, 2);
      const [line, usage] = r.err.split('\n');
      assert.equal(line, 'switchyard: no source: give --kubeconfig, --master or --manifests (or run in a pod, where the in-cluster configuration is used)');
      assert.match(usage!, /^usage: switchyard \[agent\] \[flags\]/);
    } finally {
      if (saved !== undefined) process.env.KUBERNETES_SERVICE_HOST = saved;
    }
  });

  it('a kubeconfig that is missing or unparsable, or a missing manifests directory, is named before the kernel is touched', async () => {
    const dir = pins('badsource');
    const tmp = mkdtempSync(join(tmpdir(), 'switchyard-start-'));
    try {
      const missing = await run(['--kubeconfig', join(tmp, 'nope'), '--bpffs-dir', dir]);
      assert.equal(missing.code, 1);
      assert.match(missing.err, new RegExp(`^switchyard: --kubeconfig ${tmp}/nope: ENOENT`));
      const garbage = join(tmp, 'garbage');
      await import('node:fs').then((fs) => fs.writeFileSync(garbage, 'clusters: [: nope'));
      const bad = await run(['--kubeconfig', garbage, '--bpffs-dir', dir]);
      assert.equal(bad.code, 1);
      assert.match(bad.err, new RegExp(`^switchyard: --kubeconfig ${garbage}: `));
      const noDir = await run(['--manifests', join(tmp, 'none'), '--bpffs-dir', dir]);
      assert.equal(noDir.code, 1);
      assert.equal(noDir.err, `switchyard: --manifests ${tmp}/none: no such directory\n`);
      assert.equal(existsSync(dir), false, 'nothing pinned');
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('runs with klog text logs, and SIGTERM leaves no child (ip monitor) running', async () => {
    // In a network namespace of its own (unshare -n), gone with the process.
    const dir = pins('run');
    // A configuration with fields eBPF mode does not use: named, with why, in one warning.
    const config = join(tmpdir(), `${prefix}-config.yaml`);
    files.push(config);
    writeFileSync(config, 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nportRange: 30000-31000\nconntrack:\n  tcpBeLiberal: true\n');
    const a = start(['--config', config, '--manifests', manifests, '--hostname-override', 'n0', '--healthz-bind-address', '127.0.0.1:0', '--metrics-bind-address', '127.0.0.1:0', '--bpffs-dir', dir, '--cluster-cidr', '10.244.0.0/16', '-v', '4'], ['unshare', '-n', '--']);
    children.push(a.child);
    await until('the first sync', () => /"synced"/.test(a.out.stderr) || a.child.exitCode !== null, 60_000);
    assert.equal(a.child.exitCode, null, a.out.stderr);
    const warnings = a.out.stderr.split('\n').filter((l) => l.includes('KubeProxyConfiguration fields not used in ebpf mode'));
    assert.equal(warnings.length, 1, a.out.stderr);
    assert.match(warnings[0]!, /conntrack\.tcpBeLiberal \(eBPF mode's own connection tracking does not check TCP windows/);
    assert.match(warnings[0]!, /iptables\.localhostNodePorts \(eBPF mode serves 127\.0\.0\.1:NodePort from its socket hooks, which are off/);
    assert.match(warnings[0]!, /portRange \(the userspace proxy's port range/);
    const kids = childrenOf(a.child.pid!);
    assert.ok(kids.length > 0, 'the agent watches links with a child process');
    for (const line of a.out.stderr.trimEnd().split('\n')) assert.match(line, KLOG, line);
    a.child.kill('SIGTERM');
    const r = await a.done;
    assert.equal(r.code, 0, r.stderr);
    await until('the children to end', () => kids.every((k) => !alive(k)), 60_000);
  });

  it('a start that fails after the datapath was pinned removes what it made, and its children', async () => {
    // A plain directory as the cgroup root: the socket hooks' attach fails after the maps were
    // pinned and the link watcher started.
    const dir = pins('late');
    const notCgroup = mkdtempSync(join(tmpdir(), 'switchyard-not-cgroup-'));
    try {
      const a = start(['--manifests', manifests, '--hostname-override', 'n0', '--healthz-bind-address', '127.0.0.1:0', '--metrics-bind-address', '127.0.0.1:0', '--bpffs-dir', dir, '--cgroup-root', notCgroup], ['unshare', '-n', '--']);
      children.push(a.child);
      const seen = new Set<number>();
      const watch = setInterval(() => {
        if (a.child.pid !== undefined) for (const k of childrenOf(a.child.pid)) seen.add(k);
      }, 5);
      const r = await a.done;
      clearInterval(watch);
      assert.equal(r.code, 1, r.stderr);
      assert.deepEqual(r.stderr.trimEnd().split('\n').filter((l) => !KLOG.test(l)), [`switchyard: bpf_prog_attach: Bad file descriptor (${notCgroup})`]);
      assert.equal(existsSync(dir), false, 'the pins this start made are gone');
      await until('its children to end', () => [...seen].every((k) => !alive(k)), 60_000);
    } finally {
      rmSync(notCgroup, { recursive: true, force: true });
    }
  });

  it('an unreachable API server shows in the metrics: apiserver_up 0, failed requests and watches counted', async () => {
    const dir = pins('noapi');
    // Port 1 on the loopback of a fresh netns (lo brought up): refused at once, the reflectors retry with backoff.
    const a = start(['--master', 'http://127.0.0.1:1', '--hostname-override', 'n0', '--healthz-bind-address', '127.0.0.1:10256', '--metrics-bind-address', '127.0.0.1:10249', '--bpffs-dir', dir], ['unshare', '-n', '--', 'sh', '-c', 'ip link set lo up && exec "$@"', 'sh']);
    children.push(a.child);
    await until('a failed watch', () => /watch \w+ failed; retrying/.test(a.out.stderr) || a.child.exitCode !== null, 60_000);
    assert.equal(a.child.exitCode, null, a.out.stderr);
    const metrics = async (): Promise<string> => {
      const out = await new Promise<string>((resolve) =>
        execFile('nsenter', [`--net=/proc/${a.child.pid}/ns/net`, '--', process.execPath, GET, 'http://127.0.0.1:10249/metrics'], (_e, stdout) => resolve(stdout)),
      );
      return out === '' ? '' : (JSON.parse(out) as { body: string }).body;
    };
    let text = '';
    await until('a failed API request counted', async () => /^rest_client_requests_total\{code="<error>"/m.test((text = await metrics())), 60_000, 50);
    assert.match(text, /^switchyard_apiserver_up 0$/m);
    assert.match(text, /^switchyard_watch_events_total\{kind="\w+",event="error"\} [1-9]/m);
    assert.match(text, /^rest_client_requests_total\{code="<error>",host="127\.0\.0\.1:1",method="GET"\} [1-9]/m);
    a.child.kill('SIGTERM');
    assert.equal((await a.done).code, 0);
  });

  it('an API server without ServiceCIDRs (before 1.33): the agent syncs, says so once, and drops in the configured range', async () => {
    const dir = pins('nocidr');
    // The test API server on the loopback of the agent's own fresh netns, without the ServiceCIDR resource.
    const apiserver = fileURLToPath(new URL('../deploy/apiserver-at.ts', import.meta.url));
    // The agent starts once the server said "ready" (through a FIFO the shell keeps open): its
    // sources list at once, and a list before the server listens would be refused.
    const script = 'ip link set lo up || exit 1; f=$(mktemp -u) && mkfifo "$f" || exit 1; "$1" "$2" --listen 127.0.0.1:6443 --absent ServiceCIDR > "$f" & exec 3<"$f"; rm -f "$f"; read -r ready <&3; shift 2; exec "$@"';
    const args = ['--master', 'http://127.0.0.1:6443', '--hostname-override', 'n0', '--healthz-bind-address', '127.0.0.1:10256', '--metrics-bind-address', '127.0.0.1:10249', '--bpffs-dir', dir, '--service-cluster-ip-range', '10.96.0.0/12', '--logging-format=json'];
    const a = start(args, ['unshare', '-n', '--', 'sh', '-c', script, 'sh', process.execPath, apiserver]);
    children.push(a.child);
    const server = (): number[] => (a.child.pid === undefined ? [] : childrenOf(a.child.pid));
    try {
      await until('the first sync', () => /"msg":"synced"/.test(a.out.stderr) || a.child.exitCode !== null, 60_000);
      assert.equal(a.child.exitCode, null, a.out.stderr);
      const said = a.out.stderr.split('\n').filter((l) => l.includes('ServiceCIDR objects cannot be read'));
      assert.equal(said.length, 1, a.out.stderr);
      assert.doesNotMatch(a.out.stderr, /watch ServiceCIDR failed/, 'a missing kind is no failure');
      const cidrs = BpfMap.fromPin(`${dir}/sy_service_cidrs`, serviceCidrKey, u8);
      try {
        assert.deepEqual([...cidrs.entries()].map(([k]) => `${k.addr}/${k.prefixlen - 32}`), ['10.96.0.0/12'], 'the configured range is dropped in');
      } finally {
        cidrs.close();
      }
    } finally {
      for (const pid of server()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e; // a tool child of the agent, gone meanwhile
        }
      }
    }
    a.child.kill('SIGTERM');
    assert.equal((await a.done).code, 0);
  });

  it('--logging-format=json writes one JSON object per line', async () => {
    const dir = pins('json');
    const a = start(['--manifests', manifests, '--healthz-bind-address', `127.0.0.1:${busyPort}`, '--bpffs-dir', dir, '--logging-format=json', '--profiling']);
    children.push(a.child);
    const r = await a.done;
    assert.equal(r.code, 1);
    const [log, fatal] = r.stderr.trimEnd().split('\n');
    const o = JSON.parse(log!) as { ts: number; caller: string; msg: string };
    assert.ok(o.ts > 1.6e12, 'ts is epoch milliseconds');
    assert.match(o.caller, /^cli\/agent\.ts:\d+$/);
    assert.match(o.msg, /^flags accepted but not used by Switchyard: --profiling/);
    assert.match(fatal!, /^switchyard: serving health checks on/);
  });
});
