// The node's interfaces and addresses, read with iproute2 (JSON output) and watched through
// `ip monitor link` (rtnetlink events), so pod-facing devices are attached as they appear.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { XdpMode } from '../../bpf/attach.ts';

export interface Link {
  ifname: string;
  ifindex: number;
  /**
   * iproute2's name for the device's hardware type (ARPHRD_*): "ether", "loopback", "none"
   * (tun, WireGuard), "ipip", "gre", "sit", ... Read over rtnetlink rather than from
   * /sys/class/net/DEV/type, which shows the devices of the namespace sysfs was mounted in.
   */
  linkType: string;
  /**
   * The rtnetlink kind of a virtual device (`linkinfo.info_kind` of `ip -d link`): "veth",
   * "bridge", "vlan", "tun", ...; undefined for a device a hardware driver registered.
   */
  kind?: string;
  /**
   * The device's other end (a veth's or netkit's peer) is in another network namespace
   * (`link_netnsid` of `ip -d link`): a pod's end, for a pod-facing device.
   */
  peerElsewhere?: boolean;
}

/** Link types whose frames start with an Ethernet header, which the datapath parses. */
const ETHERNET_FRAMED = new Set(['ether', 'loopback']);

/**
 * Why the datapath cannot run on a device, or undefined when it can. L3 devices (WireGuard and
 * tun are "none", IPIP "ipip", GRE "gre", SIT "sit") carry packets that start at the IP header:
 * the programs would misparse every one of them, so they are refused, by name and type.
 */
export function attachRefusal(link: Link): string | undefined {
  if (ETHERNET_FRAMED.has(link.linkType)) return undefined;
  return `${link.ifname} is an L3 device (link type ${link.linkType}): its packets have no Ethernet header, which Switchyard's programs parse, so it is not attached and gets no service translation`;
}

/**
 * Virtual devices where native XDP costs the offloads that carry bulk traffic, by kind. A veth
 * with an XDP program turns TSO off on its peer (the kernel drops NETIF_F_GSO_SOFTWARE from the
 * peer's features, shown "[fixed]" by ethtool), so every packet crosses the pair MTU-sized instead
 * of as one GSO super-packet; measured on the lab's veths, bulk TCP through a NodePort fell to a
 * fifth of the pod-direct rate. A tap device (kind "tun") hands GSO packets written to it to
 * generic XDP, which copies them. tc serves these devices with the same translation either way.
 */
const XDP_COSTS_OFFLOADS: Readonly<Record<string, string>> = {
  veth: 'native XDP on a veth turns TSO off on its peer, so bulk traffic would cross the pair in MTU-sized packets instead of GSO super-packets',
  tun: 'a tap device runs XDP on GSO packets as generic XDP, copying each one',
};

/**
 * How XDP goes on an external device for an xdpMode: "auto" is native XDP, except on a device
 * whose kind makes XDP cost its offloads, where it is skipped with the reason (never generic XDP:
 * it runs after the skb exists, so it saves nothing over tc and linearises GRO packets). A mode
 * asked for by name is used as asked; "off" skips without a reason to say.
 */
export function xdpChoice(link: Link, mode: XdpMode | 'off'): { mode: Exclude<XdpMode, 'auto'> } | { skip: string | undefined } {
  if (mode === 'off') return { skip: undefined };
  if (mode !== 'auto') return { mode };
  const cost = link.kind === undefined ? undefined : XDP_COSTS_OFFLOADS[link.kind];
  if (cost !== undefined) return { skip: `no XDP on ${link.ifname} (xdpMode auto): ${cost}; tc serves it (set xdpMode native to attach XDP anyway)` };
  return { mode: 'native' };
}

/** Kinds of device pairs whose host end can hand a packet to the other end (ndo_get_peer_dev). */
const PEER_KINDS = new Set(['veth', 'netkit']);

/**
 * Which program serves a pod-facing device's ingress: sy_from_veth on the host end of a veth or
 * netkit pair whose other end is in another namespace (the pod's), which sends a hairpin straight
 * to that end (bpf_redirect_peer); sy_from_pod on anything else (a bridge has no peer, and
 * bpf_redirect_peer to a device without one, or with its peer in this namespace, drops the packet).
 */
export function podIngressProgram(link: Link): 'sy_from_veth' | 'sy_from_pod' {
  return link.kind !== undefined && PEER_KINDS.has(link.kind) && link.peerElsewhere === true ? 'sy_from_veth' : 'sy_from_pod';
}

function ip(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('ip', args, { maxBuffer: 16 << 20 }, (error, stdout, stderr) => (error ? reject(new Error(`ip ${args.join(' ')}: ${stderr || error.message}`)) : resolve(stdout)));
  });
}

export async function listLinks(): Promise<Link[]> {
  return parseLinks(await ip(['-d', '-j', 'link', 'show']));
}

/** Links from the JSON of `ip -d -j link show`. */
export function parseLinks(json: string): Link[] {
  const links = JSON.parse(json) as Array<{ ifname: string; ifindex: number; link_type?: string; link_netnsid?: number; linkinfo?: { info_kind?: string } }>;
  return links.map((l) => ({
    ifname: l.ifname,
    ifindex: l.ifindex,
    linkType: l.link_type ?? 'unknown',
    ...(l.linkinfo?.info_kind === undefined ? {} : { kind: l.linkinfo.info_kind }),
    ...(l.link_netnsid === undefined ? {} : { peerElsewhere: true }),
  }));
}

/** Global unicast addresses of this host (not loopback, not IPv6 link-local), with their device. */
export async function listAddresses(): Promise<Array<{ ifname: string; address: string }>> {
  const links = JSON.parse(await ip(['-j', 'addr', 'show'])) as Array<{ ifname: string; addr_info?: Array<{ local: string; scope: string }> }>;
  return links.flatMap((l) => (l.addr_info ?? []).filter((a) => a.scope === 'global').map((a) => ({ ifname: l.ifname, address: a.local })));
}

export interface NetlinkWatcherOptions {
  /** What `ip monitor` follows: "link", "address", or both. */
  objects: ReadonlyArray<'link' | 'address'>;
  /** Called (debounced) after events, after the monitor was restarted, and every reconcileMs. */
  onChange: () => void;
  /** The monitor died (exit code or error) and is restarted after `restartInMs`. */
  onRestart?: (why: string, restartInMs: number) => void;
  /** A full re-read now and then, for events lost while the monitor was down or overloaded (default 60 s; 0: none). */
  reconcileMs?: number;
  /** First and largest delay before restarting a dead monitor (default 1 s and 30 s). */
  restartMinMs?: number;
  restartMaxMs?: number;
}

/**
 * Follows rtnetlink events through a supervised `ip -o monitor` child: if it exits or cannot be
 * started it is restarted with a backoff (1 s doubling to 30 s, reset once it has run a minute)
 * and onChange runs after the restart, since events were lost while it was down; a periodic
 * reconcile covers what a monitor that never died may still have missed.
 */
export class NetlinkWatcher {
  private child: ChildProcess | undefined;
  private timer: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private reconcile: NodeJS.Timeout | undefined;
  private stopped = false;
  private failures = 0;
  private startedAt = 0;
  private readonly o: NetlinkWatcherOptions;
  /** Monitors started so far (1 after start(); more after restarts). */
  starts = 0;

  constructor(options: NetlinkWatcherOptions) {
    this.o = options;
  }

  // The child dies with the agent on every exit path (a fatal error, process.exit), not only stop().
  private readonly killOnExit = (): void => void this.child?.kill();

  /** The running monitor's pid (tests kill it to see it come back). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): void {
    this.stopped = false;
    process.once('exit', this.killOnExit);
    this.spawnMonitor();
    const every = this.o.reconcileMs ?? 60_000;
    if (every > 0) {
      this.reconcile = setInterval(() => this.o.onChange(), every);
      this.reconcile.unref();
    }
  }

  private spawnMonitor(): void {
    this.starts++;
    this.startedAt = Date.now();
    const child = spawn('ip', ['-o', 'monitor', ...this.o.objects], { stdio: ['ignore', 'pipe', 'ignore'] });
    this.child = child;
    let died = false;
    const onDeath = (why: string): void => {
      if (died) return;
      died = true;
      if (this.child === child) this.child = undefined;
      if (this.stopped) return;
      if (Date.now() - this.startedAt > 60_000) this.failures = 0;
      this.failures++;
      const delay = Math.min(this.o.restartMaxMs ?? 30_000, (this.o.restartMinMs ?? 1000) * 2 ** Math.min(this.failures - 1, 20));
      this.o.onRestart?.(why, delay);
      this.restartTimer = setTimeout(() => {
        if (this.stopped) return;
        this.spawnMonitor();
        this.o.onChange();
      }, delay);
    };
    child.once('error', (e) => onDeath(`ip monitor: ${e.message}`));
    child.once('exit', (code, signal) => onDeath(`ip monitor exited (${signal ?? `code ${code}`})`));
    createInterface({ input: child.stdout! }).on('line', () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(this.o.onChange, 100);
    });
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.restartTimer);
    clearInterval(this.reconcile);
    process.off('exit', this.killOnExit);
    this.child?.kill();
  }
}
