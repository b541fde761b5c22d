// --cleanup for IPVS mode: our virtual servers (those on kube-ipvs0's addresses, and NodePorts
// listed in our ipsets), the kube-ipvs0 device and our ipsets. Run after the iptables cleanup:
// a set cannot be destroyed while a rule still names it. Someone else's virtual servers and
// sets stay.
import { DUMMY_DEVICE, SET_BASES, setName } from './compile.ts';
import { ipvsRunner, type Runner } from './apply.ts';
import { parseIpsetSave, parseIpvsList } from './plan.ts';

export async function cleanupIpvs(run: Runner = ipvsRunner()): Promise<{ virtualServers: number; device: boolean; ipsets: number }> {
  const report = { virtualServers: 0, device: false, ipsets: 0 };
  const names = new Set(SET_BASES.flatMap((b) => [setName(b, 4), setName(b, 6)]));
  const saved = await run('ipset', ['save']);
  const sets = saved.ok ? parseIpsetSave(saved.out, names) : new Map<string, { type: string; entries: Set<string> }>();
  const listed = await run('ipvsadm', ['-L', '-n']);
  if (listed.ok) {
    const addresses = await run('ip', ['-j', 'address', 'show']);
    const all = addresses.ok ? (JSON.parse(addresses.out) as Array<{ ifname: string; addr_info?: Array<{ local: string }> }>) : [];
    const bound = new Set(all.filter((l) => l.ifname === DUMMY_DEVICE).flatMap((l) => (l.addr_info ?? []).map((a) => a.local)));
    const local = new Set(all.flatMap((l) => (l.addr_info ?? []).map((a) => a.local)));
    const nodePorts = new Set<string>();
    for (const [name, set] of sets) {
      const proto = /NODE-PORT-(?:LOCAL-)?(TCP|UDP)$/.exec(name)?.[1];
      if (proto !== undefined) for (const port of set.entries) nodePorts.add(`${proto}/${port}`);
    }
    const doomed = [...parseIpvsList(listed.out)].filter(([, vs]) => bound.has(vs.address) || (local.has(vs.address) && nodePorts.has(`${vs.protocol}/${vs.port}`)));
    if (doomed.length > 0) {
      const r = await run('ipvsadm', ['-R'], doomed.map(([key]) => `-D ${key}\n`).join(''));
      if (!r.ok) throw new Error(`ipvsadm -R: ${r.out.trim()}`);
      report.virtualServers = doomed.length;
    }
  }
  if ((await run('ip', ['link', 'show', DUMMY_DEVICE])).ok) {
    const r = await run('ip', ['link', 'del', DUMMY_DEVICE]);
    if (!r.ok) throw new Error(`ip link del ${DUMMY_DEVICE}: ${r.out.trim()}`);
    report.device = true;
  }
  for (const name of sets.keys()) {
    const r = await run('ipset', ['destroy', name]);
    if (!r.ok) throw new Error(`ipset destroy ${name}: ${r.out.trim()}`);
    report.ipsets++;
  }
  return report;
}
