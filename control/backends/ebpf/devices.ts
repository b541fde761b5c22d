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
  const links = JSON.parse(json) as Array<{ ifname: string; ifindex: number; link_type?: string; linkinfo?: { info_kind?: string } }>;
  return links.map((l) => ({ ifname: l.ifname, ifindex: l.ifindex, linkType: l.link_type ?? 'unknown', ...(l.linkinfo?.info_kind === undefined ? {} : { kind: l.linkinfo.info_kind }) }));
}

/** Global unicast addresses of this host (not loopback, not IPv6 link-local), with their device. */
export async function listAddresses(): Promise<Array<{ ifname: string; address: string }>> {
  const links = JSON.parse(await ip(['-j', 'addr', 'show'])) as Array<{ ifname: string; addr_info?: Array<{ local: string; scope: string }> }>;
  return links.flatMap((l) => (l.addr_info ?? []).filter((a) => a.scope === 'global').map((a) => ({ ifname: l.ifname, address: a.local })));
}

/** Calls onChange (debounced) whenever links appear, disappear or change. */
export class LinkWatcher {
  private child: ChildProcess | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly onChange: () => void;

  constructor(onChange: () => void) {
    this.onChange = onChange;
  }

  // The child dies with the agent on every exit path (a fatal error, process.exit), not only stop().
  private readonly killOnExit = (): void => void this.child?.kill();

  start(): void {
    this.child = spawn('ip', ['-o', 'monitor', 'link'], { stdio: ['ignore', 'pipe', 'ignore'] });
    process.once('exit', this.killOnExit);
    createInterface({ input: this.child.stdout! }).on('line', () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(this.onChange, 100);
    });
  }

  stop(): void {
    clearTimeout(this.timer);
    process.off('exit', this.killOnExit);
    this.child?.kill();
  }
}
