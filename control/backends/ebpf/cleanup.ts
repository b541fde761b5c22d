// --cleanup for the eBPF mode: detach every program of ours (tc filters in our slot, XDP,
// cgroup socket hooks) and remove our pins. A program is ours when its name starts with "sy_";
// anything else attached beside it stays.
import { rmSync, existsSync } from 'node:fs';
import { cgroupDetach, cgroupQuery, progInfo, tcDetach, tcQuery, xdpDetach, xdpQuery, type CgroupAttachType } from '../../bpf/attach.ts';
import { call } from '../../bpf/errors.ts';
import { native } from '../../bpf/native.ts';
import { listLinks } from './devices.ts';

const HOOKS: readonly CgroupAttachType[] = ['connect4', 'connect6', 'sendmsg4', 'sendmsg6', 'recvmsg4', 'recvmsg6', 'getpeername4', 'getpeername6'];

function ours(progId: number): { ours: boolean; fd: number } {
  const fd = call(() => native().progFdById(progId));
  return { ours: progInfo(fd).name.startsWith('sy_'), fd };
}

export interface CleanupReport {
  tcFilters: string[];
  xdp: string[];
  cgroupPrograms: number;
  pinsRemoved: boolean;
}

export async function cleanupEbpf(options: { pinDir: string; cgroup?: string }): Promise<CleanupReport> {
  const report: CleanupReport = { tcFilters: [], xdp: [], cgroupPrograms: 0, pinsRemoved: false };
  for (const link of await listLinks()) {
    for (const direction of ['ingress', 'egress'] as const) {
      const id = tcQuery({ ifindex: link.ifindex, direction });
      if (id === null) continue;
      const p = ours(id);
      native().closeFd(p.fd);
      if (p.ours && tcDetach({ ifindex: link.ifindex, direction })) report.tcFilters.push(`${link.ifname}/${direction}`);
    }
    const x = xdpQuery({ ifindex: link.ifindex });
    if (x.progId !== 0) {
      const p = ours(x.progId);
      native().closeFd(p.fd);
      if (p.ours && xdpDetach({ ifindex: link.ifindex })) report.xdp.push(link.ifname);
    }
  }
  if (options.cgroup !== undefined && existsSync(options.cgroup)) {
    for (const hook of HOOKS) {
      for (const id of cgroupQuery(options.cgroup, hook)) {
        const p = ours(id);
        try {
          if (p.ours && cgroupDetach(options.cgroup, hook, p.fd)) report.cgroupPrograms++;
        } finally {
          native().closeFd(p.fd);
        }
      }
    }
  }
  if (existsSync(options.pinDir)) {
    rmSync(options.pinDir, { recursive: true, force: true });
    report.pinsRemoved = true;
  }
  return report;
}
