// The eBPF backend as the agent drives it: the datapath (adopted from pins), its configuration
// from the node facts, full syncs of the compiled desired state, and attachment to devices and
// the cgroup, kept up to date as pod devices come and go.
import { BpffsMissingError } from '../../bpf/errors.ts';
import { cgroupReplace, ForeignXdpProgramError, netnsCookie, tcAttach, xdpAttach, xdpDetachOurs, type CgroupAttachType, type XdpMode } from '../../bpf/attach.ts';
import type { ChangeSet, DesiredState, NodeFacts } from '../../model/types.ts';
import { compileDatapath, compileDatapathSliced, compilePort, emptyDelta, type CompiledModel } from './compile.ts';
import { conntrackEntries, conntrackTimeouts, handshakeEntries, type ConntrackTimeouts, type KubeProxyConntrack } from './conntrack.ts';
import { EbpfDatapath, LayoutMismatchError, SLICE_MS, type GcReport, type SyncReport } from './datapath.ts';
import { native } from '../../bpf/native.ts';
import { BpfMap } from '../../bpf/map.ts';
import { existsSync } from 'node:fs';
import { attachRefusal, listLinks, NetlinkWatcher, podIngressProgram, xdpChoice } from './devices.ts';
import { buildDegradation, buildOfObject, datapathCandidates, kernelFeatures } from './object-path.ts';
import { retireSockRevNat, SocketTerminator, socketMapSizes } from './sockets.ts';
import { listKernelFlows, planSeed } from './takeover.ts';
import { unallocatedDropCIDRsOf } from '../../model/plan.ts';
import { monotonicCoarseNs } from './datapath.ts';
import { CT, ctKey, ctValue } from '../../bpf/layout.ts';
import { toolRunner, type StoppableToolRunner, type ToolRunner } from '../tool-runner.ts';
import { cleanupIptables } from '../iptables/cleanup.ts';
import { cleanupNftables, kubeProxyTableFamilies, NAT_HOLD_TABLE, natHoldInput } from '../nftables/cleanup.ts';
import { nftRunner } from '../nftables/apply.ts';
import { cleanupIpvs } from '../ipvs/cleanup.ts';
import { DUMMY_DEVICE } from '../ipvs/compile.ts';

export interface EbpfBackendOptions {
  /**
   * The datapath object, or objects to try in order; by default the builds this kernel may load,
   * best first (object-path.ts).
   */
  object?: string | readonly string[];
  pinDir: string;
  maxEntries?: Readonly<Record<string, number>>;
  /** Pod-facing devices: names starting with one of these. */
  podDevicePrefixes: readonly string[];
  /** External devices by name; empty: none (NodePorts then work from pods and the node only). */
  externalDevices: readonly string[];
  /** cgroup v2 directory for the socket-level programs; undefined: no socket-level balancing. */
  cgroup?: string;
  /** XDP on external devices: a mode, or "off" (tc alone). */
  xdpMode?: XdpMode | 'off';
  /** kube-proxy's conntrack section: table sizes and timeouts (conntrack.ts). */
  conntrack?: KubeProxyConntrack;
  /** Source ports for SNAT (masquerade, hairpin, NAT clashes) when the client's own is taken. */
  snatPorts?: { min: number; max: number };
  /** How often expired flows are collected; default: a third of the shortest timeout, at most 10 s. */
  gcIntervalMs?: number;
  log: (fields: Record<string, unknown>, message: string) => void;
}

/**
 * Default SNAT source ports: every unprivileged port, as netfilter's masquerade uses. Closed flows
 * hold their port for TIME_WAIT, so a busy backend needs tens of thousands; above the node's own
 * ephemeral range (32768-60999) only 4.5k would be left. The datapath checks the node's own sockets
 * before it takes a port (sy_local_socket).
 */
export const DEFAULT_SNAT_PORTS = { min: 1024, max: 65535 };

const SOCKET_HOOKS: readonly CgroupAttachType[] = ['connect4', 'connect6', 'sendmsg4', 'sendmsg6', 'recvmsg4', 'recvmsg6', 'getpeername4', 'getpeername6'];

/** A service port the maps do not hold as compiled, and why. */
export interface NotProgrammed {
  servicePort: string;
  /** Its service, "ns/name". */
  service: string;
  frontend: string;
  error: string;
}

export class EbpfBackend {
  readonly datapath: EbpfDatapath;
  private readonly o: EbpfBackendOptions;
  /** Devices our programs are attached to: name -> ifindex (a re-created device gets a new one). */
  private readonly attached = new Map<string, number>();
  /** Devices refused (an L3 device), said once per device: name -> ifindex. */
  private readonly refused = new Map<string, number>();
  private socketsAttached = false;
  /** Destroys sockets connected to removed backends; undefined without socket hooks or bpf_sock_destroy. */
  private sockets: SocketTerminator | undefined;
  private watcher: NetlinkWatcher | undefined;
  private gcTimer: NodeJS.Timeout | undefined;
  private gcRunning: Promise<void> | undefined;
  /** The compiled model the maps were last written from (undefined before the first sync). */
  private model: CompiledModel | undefined;
  /** Service ports that could not be programmed (a map full), with what failed. */
  private readonly notProgrammed = new Map<string, NotProgrammed[]>();
  /** The last garbage collection pass, for metrics and logs. */
  lastGc: (GcReport & { at: number; ms: number }) | undefined;

  private constructor(o: EbpfBackendOptions, datapath: EbpfDatapath) {
    this.o = o;
    this.datapath = datapath;
  }

  static open(o: EbpfBackendOptions): EbpfBackend {
    const candidates = EbpfBackend.candidates(o);
    for (const [i, object] of candidates.entries()) {
      try {
        const backend = EbpfBackend.opened(o, object, EbpfDatapath.open({ object, pinDir: o.pinDir, maxEntries: EbpfBackend.mapSizes(o) }));
        if (o.cgroup !== undefined) backend.sockets = SocketTerminator.open({ datapath: backend.datapath, pinDir: o.pinDir, log: o.log });
        return backend;
      } catch (e) {
        EbpfBackend.nextCandidate(o, candidates, i, e);
      }
    }
    throw new Error('no datapath object to load');
  }

  /** The same, verifying on a worker thread: the agent starts its lists while the kernel verifies. */
  static async openAsync(o: EbpfBackendOptions): Promise<EbpfBackend> {
    const candidates = EbpfBackend.candidates(o);
    for (const [i, object] of candidates.entries()) {
      try {
        const backend = EbpfBackend.opened(o, object, await EbpfDatapath.openAsync({ object, pinDir: o.pinDir, maxEntries: EbpfBackend.mapSizes(o) }));
        if (o.cgroup !== undefined) backend.sockets = await SocketTerminator.openAsync({ datapath: backend.datapath, pinDir: o.pinDir, log: o.log });
        return backend;
      } catch (e) {
        EbpfBackend.nextCandidate(o, candidates, i, e);
      }
    }
    throw new Error('no datapath object to load');
  }

  private static candidates(o: EbpfBackendOptions): string[] {
    return o.object === undefined ? datapathCandidates() : typeof o.object === 'string' ? [o.object] : [...o.object];
  }

  private static mapSizes(o: EbpfBackendOptions): Record<string, number> {
    const cpus = native().numPossibleCpus();
    const ctSize = conntrackEntries(o.conntrack ?? {}, cpus);
    // A table already pinned keeps its size (its flows are live); configuration sizes new ones.
    const synSize = handshakeEntries(ctSize);
    const sockSizes = Object.entries(socketMapSizes(ctSize)).map(([name, n]) => [name, pinnedSize(o.pinDir, name) ?? n]);
    return { sy_ct: pinnedSize(o.pinDir, 'sy_ct') ?? ctSize, sy_ct_any: pinnedSize(o.pinDir, 'sy_ct_any') ?? ctSize, sy_ct_syn: pinnedSize(o.pinDir, 'sy_ct_syn') ?? synSize, ...Object.fromEntries(sockSizes), ...serviceMapSizes(o) };
  }

  /** The backend around a loaded datapath; the socket iterators are the caller's to load. */
  private static opened(o: EbpfBackendOptions, object: string, dp: EbpfDatapath): EbpfBackend {
    o.log({ object, pinDir: o.pinDir, frontends: dp.frontendCount }, `datapath loaded; adopted ${dp.frontendCount} frontends from pinned maps`);
    const build = buildOfObject(object);
    const degraded = build && buildDegradation(build, kernelFeatures());
    if (degraded) o.log({ object, build }, degraded);
    return new EbpfBackend(o, dp);
  }

  /** A build this kernel refuses (the verifier, a CO-RE relocation) gives way to the next; throws when none is left. */
  private static nextCandidate(o: EbpfBackendOptions, candidates: readonly string[], i: number, e: unknown): void {
    // Pins of another layout or a missing bpffs are not a build's fault.
    const last = i === candidates.length - 1;
    if (last || e instanceof LayoutMismatchError || e instanceof BpffsMissingError) throw e;
    o.log({ object: candidates[i], error: (e as Error).message }, `datapath object ${candidates[i]} did not load; trying ${candidates[i + 1]}`);
  }

  configure(node: NodeFacts): void {
    this.datapath.configure({
      nodeIp4: node.primaryIPs[4] ?? node.addresses[4][0] ?? '0.0.0.0',
      nodeIp6: node.primaryIPs[6] ?? node.addresses[6][0] ?? '::',
      snatPortMin: (this.o.snatPorts ?? DEFAULT_SNAT_PORTS).min,
      snatPortMax: (this.o.snatPorts ?? DEFAULT_SNAT_PORTS).max,
      flags: 0,
      ...timeoutFields(conntrackTimeouts(this.o.conntrack)),
      hostNetnsCookie: netnsCookie(),
    });
  }

  /**
   * Flows kernel conntrack translates for a proxy before us (kube-proxy, or a rule mode) are left
   * to netfilter: entries marked SY_CT_HOST for both directions (takeover.ts). Needs the frontends
   * written (after a sync). Returns how many flows were taken over.
   */
  async takeOver(when: string, run: ToolRunner = toolRunner()): Promise<number> {
    const listed = await listKernelFlows(run);
    if ('error' in listed) {
      this.o.log({ error: listed.error }, `cannot read kernel conntrack (${listed.error}): flows another proxy translated, if any, are not kept`);
      return 0;
    }
    // Nothing to recognise on a node without flows: the frontends' table (a walk of every
    // programmed frontend and backend) is built only when there are.
    const entries = listed.flows.length === 0 ? [] : planSeed(listed.flows, this.datapath.frontendsWithBackends(), monotonicCoarseNs());
    let written = 0;
    for (const e of entries) {
      const map = this.datapath.object.map(e.table, ctKey, ctValue);
      // A flow of ours since (its tuple reused): ours wins.
      const current = map.get(e.key);
      if (current !== undefined && (current.flags & CT.HOST) === 0) continue;
      try {
        map.set(e.key, e.value);
        written++;
      } catch (err) {
        this.o.log({ error: (err as Error).message }, `conntrack table full: a flow netfilter translated is not kept`);
        break;
      }
    }
    const flows = entries.length / 2;
    if (flows > 0 || when === 'before attaching') this.o.log({ flows, entries: written, when }, `takeover: ${flows} flows translated by kernel conntrack stay with netfilter (${when})`);
    this.tookOver += flows;
    return flows;
  }

  /** Flows taken over from kernel conntrack at start (takeOver). */
  tookOver = 0;
  /** Families whose NAT hold table (nftables/cleanup.ts) is ours to remove once no taken-over flow lives. */
  private natHold: string[] = [];

  /**
   * Whether kube-proxy's IPVS state (kube-ipvs0 and its virtual servers, the ipsets) stays until
   * the flows IPVS translated for it end. IPVS keeps a flow's NAT in its own connection table, not
   * in conntrack, and serves it only while the virtual server lives (kube-proxy sets
   * expire_nodest_conn) and the VIP is local (kube-ipvs0's addresses route it to LOCAL_IN).
   */
  private ipvsHold = false;

  /** The NAT hold table and IPVS's state go when the last flow netfilter translated for kube-proxy ended. */
  private async releaseNatHold(r: GcReport): Promise<void> {
    if (r.hostEntries > 0) return;
    if (this.ipvsHold) {
      this.ipvsHold = false;
      try {
        const ipvs = await cleanupIpvs(toolRunner());
        this.o.log({ ...ipvs }, `takeover: the last flow kube-proxy's IPVS rules translated ended; ${DUMMY_DEVICE}, ${ipvs.virtualServers} virtual servers and ${ipvs.ipsets} ipsets removed`);
      } catch (e) {
        this.o.log({ error: (e as Error).message }, `removing kube-proxy's IPVS state failed: ${(e as Error).message}`);
      }
    }
    if (this.natHold.length === 0) return;
    const families = this.natHold;
    this.natHold = [];
    const run = nftRunner();
    const res = await run('nft', ['-f', '-'], families.map((f) => `delete table ${f} ${NAT_HOLD_TABLE}\n`).join(''));
    this.o.log({ families, ok: res.ok }, res.ok ? `takeover: the last flow kube-proxy's rules translated ended; ${NAT_HOLD_TABLE} removed` : `nft: removing ${NAT_HOLD_TABLE} failed: ${res.out.trim()}`);
  }

  /** Removes the rules of the rule modes (kube-proxy's iptables and nftables layouts), as --cleanup does. */
  async removeRuleModes(): Promise<void> {
    // One runner for every tool this runs: close() kills what is still running (SIGTERM).
    const tools = toolRunner();
    this.ruleTools = tools;
    try {
      const ipt = await cleanupIptables(tools);
      // Flows kube-proxy's nftables rules translated keep their NAT only while a NAT chain of their
      // family is registered: a table of ours holds one until the last of them ended (gcOnce).
      const families = this.tookOver > 0 ? await kubeProxyTableFamilies(tools) : [];
      if (families.length > 0) {
        const r = await tools('nft', ['-f', '-'], natHoldInput(families));
        if (r.ok) this.natHold = families;
        else this.o.log({ error: r.out.trim() }, `nft: could not add the ${NAT_HOLD_TABLE} table: flows kube-proxy's nftables rules translated lose their NAT with its table`);
      }
      const nft = await cleanupNftables(tools, { keepNatHold: true });
      // IPVS's state goes after the iptables rules that name its ipsets; now, or when the flows
      // it translated ended (releaseNatHold).
      const ipvsPresent = (await tools('ip', ['link', 'show', DUMMY_DEVICE])).ok;
      let ipvs = { virtualServers: 0, device: false, ipsets: 0 };
      if (ipvsPresent && this.tookOver > 0) {
        this.ipvsHold = true;
        this.o.log({ device: DUMMY_DEVICE }, `takeover: kube-proxy's IPVS virtual servers and ${DUMMY_DEVICE} stay until the flows they translated end`);
      } else if (ipvsPresent) {
        ipvs = await cleanupIpvs(tools);
      }
      if (ipt.chains > 0 || ipt.jumps > 0 || nft.tables.length > 0 || ipvs.device) this.o.log({ iptablesChains: ipt.chains, iptablesJumps: ipt.jumps, nftablesTables: nft.tables, ipvs }, `removed the rules of kube-proxy's iptables/nftables/IPVS modes (${ipt.chains} chains, ${nft.tables.length} tables, ${ipvs.virtualServers} virtual servers)`);
    } catch (e) {
      if (!this.closed) this.o.log({ error: (e as Error).message }, `removing kube-proxy's rules failed: ${(e as Error).message}`);
    } finally {
      if (this.ruleTools === tools) this.ruleTools = undefined;
    }
  }

  /** The tools removeRuleModes runs, while it runs. */
  private ruleTools: StoppableToolRunner | undefined;
  private closed = false;

  /** Collects expired flows now and then (one pass at a time; each pass yields to the event loop). */
  startGc(): void {
    const t = conntrackTimeouts(this.o.conntrack);
    const shortest = [t.udpNs, t.tcpSynNs, t.tcpClosedNs, t.udpStreamNs].reduce((a, b) => (a < b ? a : b));
    const interval = this.o.gcIntervalMs ?? Math.min(10_000, Number(shortest / 3_000_000n));
    this.gcTimer = setInterval(() => {
      if (this.gcRunning !== undefined) return;
      this.gcRunning = this.gcOnce()
        .then(() => undefined)
        .catch((e: Error) => this.o.log({ error: e.message }, `conntrack garbage collection failed: ${e.message}`))
        .finally(() => (this.gcRunning = undefined));
    }, interval);
    this.gcTimer.unref?.();
  }

  async gcOnce(): Promise<GcReport> {
    const t0 = performance.now();
    const r = await this.datapath.gc();
    this.lastGc = { ...r, at: Date.now(), ms: performance.now() - t0 };
    await this.releaseNatHold(r);
    if (r.deleted > 0 || r.idsReleased > 0) this.o.log({ ...r, ms: +this.lastGc.ms.toFixed(1) }, `conntrack: ${r.deleted} expired entries collected, ${r.entriesAfter} remain`);
    return r;
  }

  /** A full sync of the state, compiled and applied whole (tests, tools). */
  sync(state: DesiredState): SyncReport {
    const model = compileDatapath(state);
    const report = this.datapath.sync(model);
    this.model = model;
    this.recordFailures(state, report, undefined);
    if (report.backendsRemoved > 0) this.destroySockets();
    return report;
  }

  /**
   * The agent's sync: the change set is the contract. A full sync (start-up, resync, node facts
   * changed, or pins adopted and not yet matched) compiles and applies everything in slices that
   * yield to the event loop; otherwise only the changed service ports are compiled and only their
   * entries written. Service ports that failed are retried when a change freed room, and on
   * every full sync.
   */
  async syncChanges(state: DesiredState, changes: ChangeSet, full: boolean): Promise<SyncReport & { notProgrammed: NotProgrammed[] }> {
    const model = this.model;
    if (full || model === undefined || changes.nodeChanged || !this.datapath.settled) {
      // The old model goes first: one copy of the compiled state on the heap, not two (at 100k
      // services the heap, and with it each garbage collection pause, would be half as big again).
      this.model = undefined;
      const next = await compileDatapathSliced(state, SLICE_MS);
      const report = await this.datapath.syncSliced(next, SLICE_MS);
      this.model = next;
      this.recordFailures(state, report, undefined);
      if (report.backendsRemoved > 0) this.destroySockets();
      return { ...report, notProgrammed: [...this.notProgrammed.values()].flat() };
    }
    const delta = emptyDelta();
    for (const sp of changes.removed) model.set(sp.key, undefined, delta);
    for (const sp of changes.upserted) {
      const fs = state.families.get(sp.family);
      if (fs !== undefined) model.set(sp.key, compilePort(sp, fs, state.config), delta);
    }
    model.resolve(delta);
    const freedRoom = changes.removed.length > 0 || [...delta.frontends.values()].some((f) => f === undefined) || [...delta.backends.values()].some((b) => b === undefined);
    if (freedRoom) for (const sp of this.notProgrammed.keys()) if (!delta.ports.has(sp)) model.rewrite(sp, delta);
    const report = this.datapath.apply(delta, model.unsupported);
    // A full sync writes the compiled service CIDRs (syncSliced); an incremental one here, when
    // the change set says they changed, after the frontends as there.
    if (changes.serviceCIDRsChanged === true) {
      model.serviceCidrs = unallocatedDropCIDRsOf(state, 'ebpf');
      this.datapath.setServiceCidrs(model.serviceCidrs);
    }
    this.recordFailures(state, report, delta.ports.keys());
    if (report.backendsRemoved > 0) this.destroySockets();
    return { ...report, notProgrammed: [...this.notProgrammed.values()].flat() };
  }

  /** Service ports not programmed now: those this sync covered are replaced by its verdict. */
  private recordFailures(state: DesiredState, report: SyncReport, covered: Iterable<string> | undefined): void {
    if (covered === undefined) this.notProgrammed.clear();
    else for (const sp of covered) this.notProgrammed.delete(sp);
    for (const f of report.failed) {
      const servicePort = f.servicePort ?? f.frontend;
      let service = servicePort;
      for (const fs of state.families.values()) {
        const sp = fs.servicePorts.get(servicePort);
        if (sp !== undefined) service = `${sp.namespace}/${sp.name}`;
      }
      const list = this.notProgrammed.get(servicePort) ?? [];
      list.push({ servicePort, service, frontend: f.frontend, error: f.error });
      this.notProgrammed.set(servicePort, list);
    }
  }

  /** Resets the node's sockets that the hooks connected to a backend now gone (sockets.ts). */
  private destroySockets(): void {
    if (this.sockets === undefined) return;
    try {
      const destroyed = this.sockets.run();
      if (destroyed.length > 0) this.o.log({ sockets: destroyed.map((d) => `${d.proto} ${d.backend}:${d.port}`) }, `${destroyed.length} sockets connected to removed backends reset`);
    } catch (e) {
      this.o.log({ error: (e as Error).message }, `destroying sockets connected to removed backends failed: ${(e as Error).message}`);
    }
  }

  /** Attaches to every current pod-facing and external device, and to the cgroup. */
  async attach(): Promise<void> {
    const links = await listLinks();
    for (const l of links) {
      const pod = this.o.podDevicePrefixes.some((p) => p !== '' && l.ifname.startsWith(p));
      const external = this.o.externalDevices.includes(l.ifname);
      if (!pod && !external) continue;
      // Attach once per device: re-attaching on every link event would loop, since attaching
      // XDP itself announces a link change.
      if (this.attached.get(l.ifname) === l.ifindex || this.refused.get(l.ifname) === l.ifindex) continue;
      const refusal = attachRefusal(l);
      if (refusal !== undefined) {
        this.o.log({ device: l.ifname, linkType: l.linkType, role: pod ? 'pod' : 'external' }, refusal);
        this.refused.set(l.ifname, l.ifindex);
        continue;
      }
      try {
        if (pod) {
          tcAttach({ ifindex: l.ifindex, direction: 'ingress', progFd: this.datapath.programFd(podIngressProgram(l)) });
          tcAttach({ ifindex: l.ifindex, direction: 'egress', progFd: this.datapath.programFd('sy_to_pod') });
        } else {
          tcAttach({ ifindex: l.ifindex, direction: 'ingress', progFd: this.datapath.programFd('sy_from_external') });
          // Answers leaving by this device are translated after netfilter saw them (sy_handle).
          tcAttach({ ifindex: l.ifindex, direction: 'egress', progFd: this.datapath.programFd('sy_to_external') });
          const asked = this.o.xdpMode ?? 'auto';
          const choice = xdpChoice(l, asked);
          if ('skip' in choice) {
            // Once per device, as the attach itself: a veth or tap, where XDP would cost GSO/GRO.
            if (choice.skip !== undefined) this.o.log({ device: l.ifname, kind: l.kind, xdp: 'skipped' }, choice.skip);
            // An earlier agent's XDP program there (one that attached it) goes: tc carries the device.
            if (xdpDetachOurs({ ifindex: l.ifindex, progFd: this.datapath.programFd('sy_xdp_external') })) this.o.log({ device: l.ifname }, `removed our earlier XDP program from ${l.ifname}`);
          } else {
            try {
              const x = xdpAttach({ ifindex: l.ifindex, progFd: this.datapath.programFd('sy_xdp_external'), mode: choice.mode });
              this.o.log({ device: l.ifname, xdp: x.mode }, `XDP (${x.mode}) on ${l.ifname}`);
            } catch (e) {
              // Another agent's XDP program stays (xdpAttach never replaces one), or the driver
              // has no native XDP: tc alone carries the device, as it does everything XDP passes.
              // auto never falls back to generic XDP (xdpChoice).
              if (e instanceof ForeignXdpProgramError) this.o.log({ device: l.ifname, foreignProgId: e.progId, foreignProgName: e.progName }, e.message);
              else this.o.log({ device: l.ifname, error: (e as Error).message }, `no ${asked === 'auto' ? 'native ' : ''}XDP on ${l.ifname}; tc only`);
            }
          }
        }
        this.o.log({ device: l.ifname, role: pod ? 'pod' : 'external' }, `attached to ${l.ifname}`);
        this.attached.set(l.ifname, l.ifindex);
      } catch (e) {
        // The device went away between listing and attaching: the watcher will tell.
        this.o.log({ device: l.ifname, error: (e as Error).message }, `could not attach to ${l.ifname}`);
      }
    }
    const present = new Set(links.map((l) => l.ifname));
    for (const name of [...this.attached.keys()]) if (!present.has(name)) this.attached.delete(name);
    for (const name of [...this.refused.keys()]) if (!present.has(name)) this.refused.delete(name);
    this.attachSockets();
    // Our programs now run wherever the old ones did: a layout migration can drop the old entries.
    const sockMoved = retireSockRevNat(this.datapath.object, this.o.pinDir);
    if (sockMoved > 0) this.o.log({ entries: sockMoved }, `socket rev-NAT: ${sockMoved} entries moved to the per-protocol tables`);
    const moved = this.datapath.finishMigration();
    if (moved > 0) this.o.log({ entries: moved }, `layout migration finished (${moved} conntrack entries moved)`);
  }

  /**
   * The socket hooks on the cgroup (once). They act at connect() and sendmsg(), on sockets of
   * the node's own processes: flows already open are not theirs, so they may come before a
   * takeover, and a cgroup that refuses them fails the start at once.
   */
  attachSockets(): void {
    if (this.o.cgroup === undefined || this.socketsAttached) return;
    for (const hook of SOCKET_HOOKS) cgroupReplace(this.o.cgroup, hook, this.datapath.programFd(`sy_sock_${hook}`));
    this.socketsAttached = true;
  }

  /** Attaches to pod devices as they appear. */
  watchDevices(): void {
    this.watcher = new NetlinkWatcher({
      objects: ['link'],
      onChange: () => void this.attach().catch((e: Error) => this.o.log({ error: e.message }, 'attach failed')),
      onRestart: (why, ms) => this.o.log({ error: why, restartInMs: ms }, `${why}; restarting it in ${ms} ms, then re-reading the devices`),
    });
    this.watcher.start();
  }

  /** What the last sync compiled (kept incrementally), undefined before the first. */
  get compiled(): CompiledModel | undefined {
    return this.model;
  }

  /** The device monitor's pid, while it runs. */
  get monitorPid(): number | undefined {
    return this.watcher?.pid;
  }

  get devices(): string[] {
    return [...this.attached.keys()];
  }

  /** Stops watching; programs, filters and pinned maps stay: the datapath keeps forwarding. */
  close(): void {
    this.closed = true;
    this.ruleTools?.stop();
    clearInterval(this.gcTimer);
    this.watcher?.stop();
    this.sockets?.close();
    this.datapath.close();
  }
}

/** The maps whose size follows the cluster (services, frontends, backends). */
const SERVICE_MAPS = ['sy_frontends', 'sy_service_addrs', 'sy_slots', 'sy_backends', 'sy_revnat', 'sy_stats', 'sy_affinity', 'sy_source_ranges'] as const;
/** maps.h's size of sy_revnat and sy_stats. */
const DEFAULT_IDS = 65536;

/**
 * Sizes of the maps that follow the cluster: as configured (mapSizes), and sy_revnat (one entry
 * per frontend, plus those held for open flows of deleted ones) and sy_stats (one per service
 * port) and sy_service_addrs (one per service address) grown with sy_frontends, so that none of
 * them caps the others at 65,536 (found at 100k services: the addresses' map refused the rest). A map already
 * pinned keeps its size (libbpf reuses a pin only as it is, and its entries are live); a
 * configured size it does not have is said in the log.
 */
export function serviceMapSizes(o: Pick<EbpfBackendOptions, 'maxEntries' | 'pinDir' | 'log'>): Record<string, number> {
  const want: Record<string, number> = { ...o.maxEntries };
  const frontends = want.sy_frontends;
  if (frontends !== undefined) {
    want.sy_revnat ??= Math.max(DEFAULT_IDS, frontends + (frontends >> 2));
    want.sy_stats ??= Math.max(DEFAULT_IDS, frontends + 1);
    // One entry per address a frontend uses: never more addresses than frontends.
    want.sy_service_addrs ??= Math.max(DEFAULT_IDS, frontends);
  }
  for (const name of SERVICE_MAPS) {
    const pinned = pinnedSize(o.pinDir, name);
    if (pinned === undefined) continue;
    if (want[name] !== undefined && want[name] !== pinned) {
      o.log({ map: name, pinned, configured: want[name] }, `${name} keeps its pinned size ${pinned} (configured ${want[name]}); \`switchyard cleanup\` and a restart apply the new size`);
    }
    want[name] = pinned;
  }
  return want;
}

/** The entries of a map pinned under pinDir, if it is. */
function pinnedSize(pinDir: string, name: string): number | undefined {
  const path = `${pinDir}/${name}`;
  if (!existsSync(path)) return undefined;
  return BpfMap.pinnedInfo(path).maxEntries;
}

function timeoutFields(t: ConntrackTimeouts): { ctTimeoutTcpNs: bigint; ctTimeoutUdpNs: bigint; ctTimeoutTcpSynNs: bigint; ctTimeoutTcpFinNs: bigint; ctTimeoutTcpClosedNs: bigint; ctTimeoutUdpStreamNs: bigint } {
  return { ctTimeoutTcpNs: t.tcpEstablishedNs, ctTimeoutUdpNs: t.udpNs, ctTimeoutTcpSynNs: t.tcpSynNs, ctTimeoutTcpFinNs: t.tcpCloseWaitNs, ctTimeoutTcpClosedNs: t.tcpClosedNs, ctTimeoutUdpStreamNs: t.udpStreamNs };
}
