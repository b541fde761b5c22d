// The node's interfaces and addresses, read with iproute2 (JSON output) and watched through
// `ip monitor link` (rtnetlink events), so pod-facing devices are attached as they appear.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface Link {
  ifname: string;
  ifindex: number;
  /**
   * iproute2's name for the device's hardware type (ARPHRD_*): "ether", "loopback", "none"
   * (tun, WireGuard), "ipip", "gre", "sit", ... Read over rtnetlink rather than from
   * /sys/class/net/DEV/type, which shows the devices of the namespace sysfs was mounted in.
   */
  linkType: string;
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

function ip(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('ip', args, { maxBuffer: 16 << 20 }, (error, stdout, stderr) => (error ? reject(new Error(`ip ${args.join(' ')}: ${stderr || error.message}`)) : resolve(stdout)));
  });
}

export async function listLinks(): Promise<Link[]> {
  const links = JSON.parse(await ip(['-j', 'link', 'show'])) as Array<{ ifname: string; ifindex: number; link_type?: string }>;
  return links.map((l) => ({ ifname: l.ifname, ifindex: l.ifindex, linkType: l.link_type ?? 'unknown' }));
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
