// `npm run demo`: builds a 2-node lab, loads the skeleton datapath, puts a VIP in front of five
// pods and shows how TCP and UDP connections to it spread, until Ctrl-C or --duration.
//   npm run demo -- [--duration SECONDS] [--connections N]
import { parseArgs } from 'node:util';
import { tcAttach, xdpAttach } from '../../control/bpf/attach.ts';
import { perCpu, u32 } from '../../control/bpf/codec.ts';
import { IPPROTO, SKEL_STAT, skelCounter, skelFrontend, skelService } from '../../control/bpf/layout.ts';
import { native } from '../../control/bpf/native.ts';
import { LoadedObject } from '../../control/bpf/object.ts';
import { skeletonObject } from '../bpf/objects.ts';
import { Lab, netnsPath } from './lab.ts';
import type { ProbeResult } from './probe.ts';
import { sweepStale } from './sweep.ts';

const VIP = '10.96.0.10';
const VIP_PORT = 80;

function table(results: ProbeResult[], pods: string[]): string {
  const rows = pods.map((pod) => {
    const tcp = results.filter((r) => r.ok && r.target.proto === 'tcp' && r.reply.pod === pod).length;
    const udp = results.filter((r) => r.ok && r.target.proto === 'udp' && r.reply.pod === pod).length;
    return `  ${pod.padEnd(6)} tcp ${String(tcp).padStart(4)}  udp ${String(udp).padStart(4)}  ${'#'.repeat(tcp + udp)}`;
  });
  const failed = results.filter((r) => !r.ok).length;
  return `${rows.join('\n')}\n  failed ${failed}`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string' },
      connections: { type: 'string', default: '40' },
    },
  });
  const durationMs = values.duration === undefined ? Infinity : Number(values.duration) * 1000;
  const connections = Number(values.connections);
  let stopping = false;
  // First Ctrl-C: finish the round and clean up; a second one exits at once (the lab's exit
  // handler still tears everything down).
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (stopping) process.exit(130);
      stopping = true;
    });
  }

  const swept = sweepStale();
  if (swept.length > 0) console.log(`swept ${swept.length} leftovers of earlier runs`);
  const lab = await Lab.create({ nodes: 2, podsPerNode: 3 });
  console.log(`lab ${lab.prefix}: nodes ${lab.nodes.map((n) => `${n.name} ${n.ipv4}`).join(', ')}`);
  const obj = LoadedObject.load(skeletonObject, { pinDir: lab.bpffsDir('demo') });
  try {
    const client = lab.pod('n0p0');
    const backends = lab.pods.filter((p) => p !== client);
    const frontends = obj.map('skel_frontends', skelFrontend, skelService);
    const revnat = obj.map('skel_revnat', skelFrontend, skelFrontend);
    for (const proto of [IPPROTO.TCP, IPPROTO.UDP]) {
      frontends.set({ addr: VIP, port: VIP_PORT, proto }, { count: backends.length, backends: backends.map((b) => ({ addr: b.ipv4, port: 8080 })) });
      for (const b of backends) revnat.set({ addr: b.ipv4, port: 8080, proto }, { addr: VIP, port: VIP_PORT, proto });
    }
    for (const node of lab.nodes) {
      for (const pod of node.pods) {
        const target = { ifname: pod.hostIf, netns: netnsPath(node.netns) };
        tcAttach({ ...target, direction: 'ingress', progFd: obj.programFd('sy_skel_tc_ingress') });
        tcAttach({ ...target, direction: 'egress', progFd: obj.programFd('sy_skel_tc_egress') });
      }
      const xdp = xdpAttach({ ifname: node.wireIf, netns: netnsPath(node.netns), progFd: obj.programFd('sy_skel_xdp'), mode: 'auto' });
      console.log(`${node.name}: tc on ${node.pods.map((p) => p.hostIf).join(' ')}, xdp (${xdp.mode}) on ${node.wireIf}`);
    }
    console.log(`VIP ${VIP}:${VIP_PORT} -> ${backends.map((b) => `${b.name} ${b.ipv4}:8080`).join(', ')}`);

    const started = Date.now();
    for (let round = 1; !stopping && Date.now() - started < durationMs; round++) {
      const results = await lab.probe(client.netns, {
        targets: [
          { proto: 'tcp', host: VIP, port: VIP_PORT },
          { proto: 'udp', host: VIP, port: VIP_PORT },
        ],
        count: connections,
      });
      console.log(`\nround ${round}: ${connections} TCP connections and ${connections} UDP flows from ${client.name} to ${VIP}:${VIP_PORT}`);
      console.log(table(results, backends.map((b) => b.name)));
      const stats = obj.map('skel_stats', u32, perCpu(skelCounter, native().numPossibleCpus()));
      const sum = (i: number): bigint => (stats.get(i) ?? []).reduce((s, c) => s + c.packets, 0n);
      console.log(`  datapath: ${sum(SKEL_STAT.FORWARD)} packets translated to backends, ${sum(SKEL_STAT.REVERSE)} replies translated back, ${sum(SKEL_STAT.XDP)} seen by XDP`);
      const left = durationMs - (Date.now() - started);
      if (left > 0) await new Promise((r) => setTimeout(r, Math.min(1000, left)));
    }
  } finally {
    obj.close();
    await lab.teardown();
    console.log(`\ncleaned up lab ${lab.prefix}`);
  }
}

await main();
