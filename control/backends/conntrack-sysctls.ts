// kube-proxy's conntrack section in the rule-based modes (iptables, nftables, ipvs): the kernel's
// nf_conntrack sysctls, set at start as kube-proxy's setupConntrack does. nf_conntrack_max is
// maxPerCore x CPUs (at least min; 0 maxPerCore: left alone); each timeout is set when given
// (0: left alone); tcp_be_liberal only when true. A value already in place is not written. What
// cannot be written (a read-only /proc/sys in a pod, nf_conntrack_max outside the initial network
// namespace, no nf_conntrack module) is skipped and reported, never fatal. eBPF mode tracks its
// own flows and takes this section for its own table instead (ebpf/conntrack.ts).
import type { ToolRunner } from './tool-runner.ts';

export interface ConntrackSysctlConfig {
  maxPerCore?: number;
  min?: number;
  tcpEstablishedTimeoutSeconds?: number;
  tcpCloseWaitTimeoutSeconds?: number;
  tcpBeLiberal?: boolean;
  udpTimeoutSeconds?: number;
  udpStreamTimeoutSeconds?: number;
}

export interface ConntrackSysctl {
  /** e.g. net.netfilter.nf_conntrack_max */
  name: string;
  value: number;
}

/** The sysctls kube-proxy would set for this configuration on a node with `cpus` CPUs. Pure. */
export function conntrackSysctls(c: ConntrackSysctlConfig, cpus: number): ConntrackSysctl[] {
  const out: ConntrackSysctl[] = [];
  const add = (name: string, value: number | undefined): void => {
    if (value !== undefined && value > 0) out.push({ name: `net.netfilter.nf_conntrack_${name}`, value: Math.round(value) });
  };
  if (c.maxPerCore !== undefined && c.maxPerCore > 0) add('max', Math.max(c.maxPerCore * cpus, c.min ?? 0));
  add('tcp_timeout_established', c.tcpEstablishedTimeoutSeconds);
  add('tcp_timeout_close_wait', c.tcpCloseWaitTimeoutSeconds);
  if (c.tcpBeLiberal === true) add('tcp_be_liberal', 1);
  add('udp_timeout', c.udpTimeoutSeconds);
  add('udp_timeout_stream', c.udpStreamTimeoutSeconds);
  return out;
}

export interface ConntrackSysctlReport {
  set: string[];
  unchanged: string[];
  skipped: Array<{ name: string; why: string }>;
}

/** Sets each sysctl through `sysctl` (run by `run`, in the node's netns in the lab); never throws. */
export async function applyConntrackSysctls(wanted: readonly ConntrackSysctl[], run: ToolRunner): Promise<ConntrackSysctlReport> {
  const report: ConntrackSysctlReport = { set: [], unchanged: [], skipped: [] };
  for (const { name, value } of wanted) {
    const now = await run('sysctl', ['-n', name]);
    if (!now.ok) {
      report.skipped.push({ name, why: now.out.trim() || 'not readable (is nf_conntrack loaded?)' });
      continue;
    }
    if (Number(now.out.trim()) === value) {
      report.unchanged.push(name);
      continue;
    }
    // procps' sysctl exits 0 when a write is refused (EINVAL on a read-only key): read it back.
    const w = await run('sysctl', ['-w', `${name}=${value}`]);
    const after = w.ok ? await run('sysctl', ['-n', name]) : w;
    if (after.ok && Number(after.out.trim()) === value) report.set.push(`${name}=${value}`);
    else report.skipped.push({ name, why: w.ok ? 'the write did not take (read-only /proc/sys, or a key of the initial network namespace)' : w.out.trim() || 'not writable' });
  }
  return report;
}
