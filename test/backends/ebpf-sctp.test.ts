// SCTP through the eBPF datapath, with real packets: the kernel's own SCTP (Python's socket
// module) opens an association through a ClusterIP whose port is its target port, to a backend
// on the same node and on another, IPv4 and IPv6. SCTP's CRC32c covers no pseudo-header, so the
// datapath translates addresses only and the checksum stays valid; ports whose target port
// differs are left to the rule modes (reported, not programmed).
//
// This machine's kernel has no SCTP at all (no module, not built in): here the test is skipped
// with that reason, as the feature cannot exist on it; the VM run on Debian's kernels (which
// have the sctp module) is the one that proves it (test/vm/vm.test.ts).
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { compileDatapath } from '../../control/backends/ebpf/compile.ts';
import { service, slice } from '../cases/objects.ts';
import { inNetns, Lab, type LabPod } from '../lab/lab.ts';
import { until } from '../wait.ts';
import { programNode, type ProgrammedNode } from './ebpf-lab.ts';

const execFileP = promisify(execFile);
const PORT = 7070;
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

/** Why this kernel cannot run SCTP, or undefined when it can (loading the module if need be). */
function sctpMissing(): string | undefined {
  if (existsSync('/proc/net/sctp')) return undefined;
  const r = spawnSync('modprobe', ['sctp'], { timeout: 20_000, encoding: 'utf8' });
  if (r.status === 0 && existsSync('/proc/net/sctp')) return undefined;
  return `this kernel has no SCTP (no /proc/net/sctp, and modprobe sctp: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}); the test VM on Debian's kernels runs this test`;
}

const SERVER = `
import socket, sys
name, family, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
af = socket.AF_INET6 if family == '6' else socket.AF_INET
s = socket.socket(af, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if af == socket.AF_INET6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind(('::' if af == socket.AF_INET6 else '0.0.0.0', port))
s.listen(8)
print('ready', flush=True)
while True:
    c, peer = s.accept()
    data = c.recv(1024)
    c.sendall(name.encode() + b' ' + data)
    c.close()
`;

const CLIENT = `
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
af = socket.AF_INET6 if ':' in host else socket.AF_INET
c = socket.socket(af, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
c.settimeout(10)
c.connect((host, port))
c.sendall(b'hello')
print(c.recv(1024).decode(), c.getpeername()[0], c.getsockname()[1], flush=True)
c.close()
`;

const missing = sctpMissing();

describe('eBPF datapath: SCTP through a ClusterIP whose port is its target port (lab)', () => {
  let lab: Lab;
  let n0: ProgrammedNode;
  const servers: ChildProcess[] = [];

  const serve = async (pod: LabPod, family: 4 | 6): Promise<void> => {
    const argv = [...inNetns(pod.netns), PYTHON, '-c', SERVER, pod.name, String(family), String(PORT)];
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    servers.push(child);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    await until(`the SCTP server in ${pod.name} (IPv${family}) listening: ${out}`, () => {
      if (child.exitCode !== null) throw new Error(`the SCTP server in ${pod.name} exited: ${out}`);
      return out.includes('ready');
    }, 20_000);
  };

  before(async () => {
    if (missing !== undefined) return;
    lab = await Lab.create({ nodes: 2, podsPerNode: 2 });
    n0 = programNode(lab, lab.nodes[0]!, (tracker) => {
      for (const [name, pod, last] of [['sctp-local', 'n0p1', 95], ['sctp-remote', 'n1p0', 96]] as const) {
        tracker.upsertService(service({ name, clusterIPs: [`10.96.0.${last}`, `fd00:96::${last}`], ports: [{ name: 's', port: PORT, protocol: 'SCTP' }, { name: 'other', port: PORT + 1, targetPort: PORT + 2, protocol: 'SCTP' }] }));
        for (const family of [4, 6] as const) {
          const p = lab.pod(pod);
          tracker.upsertSlice(slice({ name: `${name}-${family}`, service: name, family, ports: [{ name: 's', port: PORT, protocol: 'SCTP' }, { name: 'other', port: PORT + 2, protocol: 'SCTP' }], endpoints: [{ ip: family === 4 ? p.ipv4 : p.ipv6, node: p.node.name }] }));
        }
      }
    });
    const compiled = compileDatapath(n0.tracker.state());
    const report = n0.datapath.sync(compiled);
    assert.deepEqual(report.failed, []);
    // The ports whose target port differs are reported, not programmed.
    const other = compiled.unsupported.filter((u) => u.servicePort.includes(':other/SCTP/'));
    assert.equal(other.length, 4, JSON.stringify(compiled.unsupported));
    for (const u of other) assert.match(u.reason, /SCTP port 7071 -> target 7072: the eBPF datapath translates SCTP addresses only/);
    for (const pod of ['n0p1', 'n1p0']) for (const family of [4, 6] as const) await serve(lab.pod(pod), family);
  });

  after(async () => {
    for (const s of servers) s.kill('SIGKILL');
    n0?.datapath.close();
    await lab?.teardown();
  });

  for (const [label, pod, last] of [['a backend on the same node', 'n0p1', 95], ['a backend on another node', 'n1p0', 96]] as const) {
    it(`an SCTP association to ${label} through its ClusterIP, IPv4 and IPv6: the backend answers, the client sees the ClusterIP as its peer`, { skip: missing ?? false }, async () => {
      for (const vip of [`10.96.0.${last}`, `fd00:96::${last}`]) {
        const client = lab.pod('n0p0');
        const { stdout } = await execFileP(inNetns(client.netns)[0]!, [...inNetns(client.netns).slice(1), PYTHON, '-c', CLIENT, vip, String(PORT)], { timeout: 30_000 });
        const [name, greeting, peer, sport] = stdout.trim().split(' ');
        assert.deepEqual([name, greeting, peer], [pod, 'hello', vip], stdout);
        // Translated by the datapath (the lab has no rule mode): its flow is in the non-TCP table.
        const family = vip.includes(':') ? 6 : 4;
        const entry = n0.datapath.conntrackEntry({ saddr: family === 6 ? client.ipv6 : client.ipv4, daddr: vip, sport: Number(sport), dport: PORT, proto: 132, family });
        assert.ok(entry, `a conntrack entry for ${vip} from port ${sport}`);
      }
    });
  }
});
