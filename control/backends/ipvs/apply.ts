// The IPVS adapter: reads what the kernel holds (ipvsadm -L -n, ipset save, kube-ipvs0's
// addresses), and feeds the planned difference through stdin: `ipset restore -exist`,
// `ip -batch -`, `ipvsadm -R`, `iptables-restore --noflush`. Order keeps traffic flowing: sets,
// addresses and virtual servers are added before the iptables rules that use them, and removed
// after.
import { RecentLog, toolRunner, type StoppableToolRunner, type ToolRunner } from '../tool-runner.ts';
import type { Family } from '../../model/ip.ts';
import { planServicePort } from '../../model/plan.ts';
import type { ChangeSet, DesiredState, FamilyState, ServicePortState } from '../../model/types.ts';
import { detectVariant, iptablesTools, XTABLES_WAIT, type IptablesVariant } from '../iptables/apply.ts';
import { renderRestore } from '../iptables/compile.ts';
import { assembleIpvs, compileIpvsPort, DUMMY_DEVICE, IPVS_JUMPS, setName, type CompiledIpvs, type IpvsPort, type VirtualServer } from './compile.ts';
import { IpvsHoldings, type HeldPort } from './holdings.ts';
import { parseIpsetSave, parseIpvsList, planAddresses, planIpsets, planIpvs, type ListedVirtualServer } from './plan.ts';

export type Runner = ToolRunner;
export const ipvsRunner = toolRunner;

export interface IpvsOptions {
  families: readonly Family[];
  /** --ipvs-scheduler; "" is rr. */
  scheduler: string;
  /** Prepended to every command (the lab runs them inside a node's netns); empty in production. */
  commandPrefix?: readonly string[];
  randomFully?: boolean;
  /** kube-proxy's ipvs.tcpTimeout / tcpFinTimeout / udpTimeout in seconds; 0 leaves the kernel's. */
  timeouts?: { tcp: number; tcpFin: number; udp: number };
}

export interface IpvsSyncReport {
  virtualServers: number;
  /** Lines sent to each tool in this sync. */
  sent: { ipvsadm: number; ipset: number; ip: number };
  draining: number;
  variant: IptablesVariant;
}

// kube-proxy's IPVS sysctls: conntrack for IPVS flows (so iptables can masquerade them), drop
// flows to deleted real servers at once, and forget persistence templates of quiesced ones.
const SYSCTLS = ['net.ipv4.vs.conntrack=1', 'net.ipv4.vs.expire_nodest_conn=1', 'net.ipv4.vs.expire_quiescent_template=1', 'net.ipv4.ip_forward=1'];

export class IpvsBackend {
  private readonly o: IpvsOptions;
  private readonly run: Runner;
  private variant: IptablesVariant | undefined;
  private prepared = false;
  /** Virtual servers applied last (ours, whatever the kernel lists). */
  private applied = new Map<string, VirtualServer>();
  private lastDesired = new Map<string, VirtualServer>();
  private queue: Promise<unknown> = Promise.resolve();
  /** The last transactions sent (bounded), for tests that count what a change sent. */
  readonly sent = new RecentLog<{ tool: 'ipvsadm' | 'ipset' | 'ip' | 'iptables'; text: string }>(64);
  /** Lines sent per tool in the current sync. */
  private lines = { ipvsadm: 0, ipset: 0, ip: 0 };
  /** Per family: the applied ports' objects and who holds each shared one; invalid after a failure. */
  private held = new Map<Family, IpvsHoldings>();
  private heldValid = false;
  syncFailures = 0;

  constructor(o: IpvsOptions, run: Runner = ipvsRunner(o.commandPrefix)) {
    this.o = o;
    this.run = run;
  }

  private async must(file: string, args: string[], input?: string): Promise<string> {
    const r = await this.run(file, args, input);
    if (!r.ok) throw new Error(`${file} ${args.join(' ')}: ${r.out.trim()}`);
    return r.out;
  }

  private async send(tool: 'ipvsadm' | 'ipset' | 'ip', lines: readonly string[]): Promise<void> {
    if (lines.length === 0) return;
    const text = `${lines.join('\n')}\n`;
    const [file, args] = tool === 'ipvsadm' ? ['ipvsadm', ['-R']] : tool === 'ipset' ? ['ipset', ['restore', '-exist']] : ['ip', ['-batch', '-']];
    await this.must(file, args, text);
    this.sent.push({ tool, text });
    this.lines[tool] += lines.length;
  }

  /** Kills a running tool (SIGTERM of the agent); the backend runs nothing after. */
  stop(): void {
    (this.run as Partial<StoppableToolRunner>).stop?.();
  }

  /** Once: the IPVS module (ipvsadm loads it), kube-proxy's sysctls, the dummy device. */
  private async prepare(): Promise<void> {
    if (this.prepared) return;
    await this.must('ipvsadm', ['-L', '-n']);
    const sysctls = this.o.families.includes(6) ? [...SYSCTLS, 'net.ipv6.conf.all.forwarding=1'] : SYSCTLS;
    for (const s of sysctls) await this.must('sysctl', ['-q', '-w', s]);
    const t = this.o.timeouts;
    if (t !== undefined && (t.tcp > 0 || t.tcpFin > 0 || t.udp > 0)) await this.must('ipvsadm', ['--set', String(t.tcp), String(t.tcpFin), String(t.udp)]);
    const link = await this.run('ip', ['link', 'show', DUMMY_DEVICE]);
    if (!link.ok) await this.must('ip', ['link', 'add', DUMMY_DEVICE, 'type', 'dummy']);
    this.variant = await detectVariant((f, a) => this.run(f, a));
    this.prepared = true;
  }

  private async boundAddresses(): Promise<Map<Family, Set<string>>> {
    const out = new Map<Family, Set<string>>([[4, new Set()], [6, new Set()]]);
    const listed = JSON.parse(await this.must('ip', ['-j', 'address', 'show', 'dev', DUMMY_DEVICE])) as Array<{ addr_info?: Array<{ family: string; local: string }> }>;
    for (const a of listed[0]?.addr_info ?? []) out.get(a.family === 'inet6' ? 6 : 4)!.add(a.local);
    return out;
  }

  private serialized<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /**
   * Without `changes` (or with `full`) every sync plans against what the kernel lists, as
   * kube-proxy's IPVS mode does. With the tracker's change set, once a whole sync has succeeded,
   * only the changed ports are compiled and planned: their virtual servers listed one by one,
   * the ipset entries and addresses no other port holds added or deleted.
   */
  sync(state: DesiredState, options: { full?: boolean; changes?: ChangeSet } = {}): Promise<IpvsSyncReport> {
    return this.serialized(async () => {
      this.lines = { ipvsadm: 0, ipset: 0, ip: 0 };
      try {
        const partial = options.full !== true && options.changes !== undefined && !options.changes.nodeChanged && this.heldValid;
        return partial ? await this.syncPorts(state, options.changes!) : await this.syncNow(state);
      } catch (e) {
        this.syncFailures++;
        this.heldValid = false;
        throw e;
      }
    });
  }

  private compilePort(fs: FamilyState, state: DesiredState, sp: ServicePortState): IpvsPort {
    return compileIpvsPort(planServicePort(sp, fs, state.config, 'ipvs'), fs.family, { scheduler: this.o.scheduler });
  }

  /** The partial sync: only the ports `changes` names. */
  private async syncPorts(state: DesiredState, changes: ChangeSet): Promise<IpvsSyncReport> {
    const plans = [];
    for (const family of this.o.families) {
      const held = this.held.get(family)!;
      const fs = state.families.get(family);
      const next = new Map<string, HeldPort | undefined>();
      for (const sp of [...changes.upserted, ...changes.removed]) {
        if (sp.family !== family || next.has(sp.key)) continue;
        const now = fs?.servicePorts.get(sp.key);
        if (now !== undefined && held.ports.get(sp.key)?.sp === now) continue;
        next.set(sp.key, now === undefined ? undefined : { sp: now, port: this.compilePort(fs!, state, now) });
      }
      plans.push({ held, next, plan: held.plan(next) });
    }
    await this.send('ipset', plans.flatMap((p) => p.plan.setAdds));
    await this.send('ip', plans.flatMap((p) => p.plan.addressAdds));
    // Each touched virtual server as the kernel has it (its real servers' connections decide
    // whether a removed one drains).
    const current = new Map<string, ListedVirtualServer>();
    const desired = new Map<string, VirtualServer>();
    for (const { plan } of plans) {
      for (const [key, vs] of plan.virtualServers) {
        const listed = await this.run('ipvsadm', ['-L', '-n', ...key.split(' ')]);
        if (listed.ok) for (const [k, v] of parseIpvsList(listed.out)) current.set(k, v);
        if (vs !== undefined) desired.set(key, vs);
      }
    }
    const touched = new Set(plans.flatMap((p) => [...p.plan.virtualServers.keys()]));
    const plan = planIpvs(current, desired, (key) => touched.has(key));
    await this.send('ipvsadm', plan.commands);
    await this.send('ip', plans.flatMap((p) => p.plan.addressDels));
    await this.send('ipset', plans.flatMap((p) => p.plan.setDels));
    for (const p of plans) p.held.apply(p.next);
    this.applied = new Map([...this.held.values()].flatMap((h) => [...h.virtualServers()]));
    this.lastDesired = this.applied;
    return { virtualServers: this.applied.size, sent: { ...this.lines }, draining: plan.draining, variant: this.variant! };
  }

  /** Re-plans real servers only: drained ones (no connections left) go. */
  drain(): Promise<number> {
    return this.serialized(async () => {
      const listed = parseIpvsList(await this.must('ipvsadm', ['-L', '-n']));
      const plan = planIpvs(listed, this.lastDesired, () => false);
      await this.send('ipvsadm', plan.commands);
      return plan.draining;
    });
  }

  private async syncNow(state: DesiredState): Promise<IpvsSyncReport> {
    await this.prepare();
    // Ports whose state object is the one applied keep their compiled objects.
    const ports = new Map<Family, Map<string, HeldPort>>();
    for (const family of this.o.families) {
      const fs = state.families.get(family);
      const was = this.heldValid ? this.held.get(family) : undefined;
      const mine = new Map<string, HeldPort>();
      for (const sp of fs === undefined ? [] : [...fs.servicePorts.values()].sort((a, b) => (a.key < b.key ? -1 : 1))) {
        const cached = was?.ports.get(sp.key);
        mine.set(sp.key, cached?.sp === sp ? cached : { sp, port: this.compilePort(fs!, state, sp) });
      }
      ports.set(family, mine);
    }
    this.heldValid = false;
    const compiled: CompiledIpvs[] = this.o.families.map((f) => assembleIpvs(state, f, [...ports.get(f)!.values()].map((p) => p.port), { scheduler: this.o.scheduler, randomFully: this.o.randomFully ?? true }));
    const bound = await this.boundAddresses();

    // 1. Sets and their new entries, addresses, virtual and real servers.
    const setNames = new Set(compiled.flatMap((c) => [...c.ipsets.keys()]));
    const sets = parseIpsetSave(await this.must('ipset', ['save']), setNames);
    const setPlans = compiled.map((c) => planIpsets(sets, c.ipsets));
    await this.send('ipset', setPlans.flatMap((p) => p.adds));
    const addressPlans = compiled.map((c) => planAddresses(bound.get(c.family)!, c.addresses, c.family));
    await this.send('ip', addressPlans.flatMap((p) => p.adds));

    const desired = new Map<string, VirtualServer>();
    for (const c of compiled) for (const [k, vs] of c.virtualServers) desired.set(k, vs);
    const nodePorts = new Set<string>();
    for (const c of compiled) {
      for (const proto of ['TCP', 'UDP'] as const) {
        for (const p of sets.get(setName(`NODE-PORT-${proto}`, c.family))?.entries ?? []) nodePorts.add(`${proto}/${p}`);
      }
    }
    const nodeIPs = new Set([...state.families.values()].flatMap((fs) => fs.nodeIPs));
    const boundAny = new Set([...bound.values()].flatMap((s) => [...s]));
    // Ours: on kube-ipvs0, applied by this process, or a NodePort we listed in our sets.
    const owned = (key: string, vs: ListedVirtualServer): boolean => boundAny.has(vs.address) || this.applied.has(key) || (nodeIPs.has(vs.address) && nodePorts.has(`${vs.protocol}/${vs.port}`));
    const plan = planIpvs(parseIpvsList(await this.must('ipvsadm', ['-L', '-n'])), desired, owned);
    await this.send('ipvsadm', plan.commands);
    this.applied = desired;
    this.lastDesired = desired;

    // 2. The iptables rules (a constant handful: the sets carry the services).
    const variant = this.variant!;
    for (const c of compiled) {
      const text = renderRestore(c.iptables);
      const t = iptablesTools(c.family, variant);
      await this.must(t.restore, [...XTABLES_WAIT, '--noflush'], text);
      this.sent.push({ tool: 'iptables', text });
      for (const j of IPVS_JUMPS) {
        if ((await this.run(t.iptables, [...XTABLES_WAIT, '-t', j.table, '-C', j.chain, ...j.args])).ok) continue;
        await this.must(t.iptables, [...XTABLES_WAIT, '-t', j.table, '-I', j.chain, ...j.args]);
      }
    }

    // 3. What nothing uses any more.
    await this.send('ip', addressPlans.flatMap((p) => p.deletions));
    await this.send('ipset', setPlans.flatMap((p) => p.deletions));

    for (const family of this.o.families) {
      const h = new IpvsHoldings(family);
      h.apply(ports.get(family)!);
      this.held.set(family, h);
    }
    this.heldValid = true;
    return { virtualServers: desired.size, sent: { ...this.lines }, draining: plan.draining, variant };
  }
}
