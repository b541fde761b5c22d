// What this kernel (and this process's privileges) can do, per proxy mode, probed for real:
// eBPF by loading a program and attaching it at tc on a throwaway veth; nftables, iptables and
// IPVS through their tools and /proc. --proxy-mode auto picks from this, and an explicitly
// requested mode that cannot work fails at start naming what is missing.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tcAttach, tcDetach } from '../bpf/attach.ts';
import { LoadedObject } from '../bpf/object.ts';

export type ProxyMode = 'ebpf' | 'nftables' | 'iptables' | 'ipvs';

export interface ModeProbe {
  mode: ProxyMode;
  /** The kernel and our privileges allow it. */
  usable: boolean;
  /** This version of Switchyard can run it. */
  built: boolean;
  reason: string;
}

/** Modes this version can run; the others are probed and reported all the same. */
export const BUILT_MODES: ReadonlySet<ProxyMode> = new Set(['ebpf', 'nftables', 'iptables', 'ipvs']);
/** kube-proxy's auto order, eBPF first. */
export const AUTO_ORDER: readonly ProxyMode[] = ['ebpf', 'nftables', 'iptables'];

const PROBE_OBJECT = fileURLToPath(new URL('../../build/bpf/skeleton.o', import.meta.url));

function tool(file: string, args: string[]): Promise<{ ok: boolean; text: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 10_000 }, (error, stdout, stderr) => resolve({ ok: error === null, text: (error ? stderr || error.message : stdout).trim() }));
  });
}

async function probeEbpf(): Promise<string | undefined> {
  let obj: LoadedObject;
  try {
    obj = LoadedObject.load(PROBE_OBJECT);
  } catch (e) {
    return `loading a BPF program failed: ${(e as Error).message}`;
  }
  const name = `syprobe${process.pid % 100000}`;
  try {
    const add = await tool('ip', ['link', 'add', name, 'type', 'veth', 'peer', 'name', `${name}p`]);
    if (!add.ok) return `cannot create a probe device: ${add.text}`;
    try {
      tcAttach({ ifname: name, direction: 'ingress', progFd: obj.programFd('sy_skel_tc_ingress') });
      tcDetach({ ifname: name, direction: 'ingress' });
    } catch (e) {
      return `attaching at tc failed: ${(e as Error).message}`;
    } finally {
      await tool('ip', ['link', 'del', name]);
    }
    return undefined;
  } finally {
    obj.close();
  }
}

// What nftables mode needs of the kernel and of nft (verdict maps on concatenations, numgen,
// fib, dynamic timeout sets updated from the packet path, NAT hooks, fully-random masquerade),
// checked by the kernel itself: `nft -c` runs the transaction and then aborts it.
const NFT_PROBE = `add table ip switchyard-probe
add chain ip switchyard-probe pre { type nat hook prerouting priority -100 ; }
add chain ip switchyard-probe post { type nat hook postrouting priority 100 ; }
add chain ip switchyard-probe ep
add map ip switchyard-probe m { type ipv4_addr . inet_proto . inet_service : verdict ; }
add set ip switchyard-probe a { type ipv4_addr ; flags dynamic,timeout ; timeout 10s ; }
add rule ip switchyard-probe pre ip daddr . meta l4proto . th dport vmap @m
add rule ip switchyard-probe pre fib daddr type local meta l4proto . th dport vmap { tcp . 1 : goto ep }
add rule ip switchyard-probe pre numgen random mod 1 vmap { 0 : goto ep }
add rule ip switchyard-probe ep update @a { ip saddr }
add rule ip switchyard-probe ep meta l4proto tcp dnat to 192.0.2.1:80
add rule ip switchyard-probe post masquerade fully-random
`;

async function probeNftables(): Promise<string | undefined> {
  return new Promise((resolve) => {
    const child = execFile('nft', ['-c', '-f', '-'], { timeout: 10_000 }, (error, _stdout, stderr) => resolve(error === null ? undefined : `nft -c: ${(stderr || error.message).trim().split('\n')[0]}`));
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(NFT_PROBE);
  });
}

export async function probeKernel(): Promise<ModeProbe[]> {
  const ebpf = await probeEbpf();
  const nft = await probeNftables();
  const ipt = await tool('iptables-save', ['-t', 'nat']);
  const ipvs = existsSync('/proc/net/ip_vs') ? { ok: true, text: '' } : await tool('ipvsadm', ['-L', '-n']);
  const probes: Array<Omit<ModeProbe, 'built'>> = [
    { mode: 'ebpf', usable: ebpf === undefined, reason: ebpf ?? 'loaded a program and attached it at tc' },
    { mode: 'nftables', usable: nft === undefined, reason: nft ?? 'the kernel checked a transaction with every nft feature the nftables mode uses' },
    { mode: 'iptables', usable: ipt.ok, reason: ipt.ok ? 'iptables-save reads the nat table' : `iptables-save: ${ipt.text}` },
    { mode: 'ipvs', usable: ipvs.ok, reason: ipvs.ok ? 'IPVS is loaded' : `no IPVS in this kernel (/proc/net/ip_vs is missing${/ENOENT/.test(ipvs.text) ? '' : `; ipvsadm: ${ipvs.text.split('\n')[0]}`})` },
  ];
  return probes.map((p) => ({ ...p, built: BUILT_MODES.has(p.mode) }));
}

/** The mode to run, or an Error that says what is missing. Pure. */
export function chooseMode(requested: string, probes: readonly ModeProbe[]): { mode: ProxyMode; why: string } | Error {
  const by = new Map(probes.map((p) => [p.mode, p]));
  const describe = (p: ModeProbe): string => `${p.mode}: ${p.usable ? 'usable' : 'not usable'} (${p.reason})${p.usable && !p.built ? ', not built in this version' : ''}`;
  if (requested === 'auto' || requested === '') {
    for (const mode of AUTO_ORDER) {
      const p = by.get(mode)!;
      if (p.usable && p.built) return { mode, why: `auto chose ${mode}: ${AUTO_ORDER.slice(0, AUTO_ORDER.indexOf(mode) + 1).map((m) => describe(by.get(m)!)).join('; ')}` };
    }
    return new Error(`auto: no mode can run here — ${probes.map(describe).join('; ')}`);
  }
  const mode = (requested === 'kernelspace' ? 'kernelspace' : requested) as ProxyMode;
  const p = by.get(mode);
  if (p === undefined) return new Error(`--proxy-mode ${requested}: this is the Linux agent (kernelspace is the Windows mode)`);
  if (!p.usable) return new Error(`--proxy-mode ${requested} cannot work here: ${p.reason}`);
  if (!p.built) return new Error(`--proxy-mode ${requested}: the kernel supports it, but this version of Switchyard does not run it yet`);
  return { mode, why: `${mode} requested: ${p.reason}` };
}
