// What the IPVS objects of the applied service ports are, and who holds each shared one, so a
// partial sync plans only the ports that changed: their virtual servers, the ipset entries and
// kube-ipvs0 addresses that no other port holds any more, or that no port held before (a
// ClusterIP is held by every port of its service). Pure.
import type { Family } from '../../model/ip.ts';
import type { ServicePortState } from '../../model/types.ts';
import type { IpvsPort, VirtualServer } from './compile.ts';
import { canonicalEntry, planAddresses } from './plan.ts';

export interface HeldPort {
  sp: ServicePortState;
  port: IpvsPort;
}

export interface IpvsPortChanges {
  /** Every virtual server the changed ports had or have -> what it should be now (undefined: deleted). */
  virtualServers: Map<string, VirtualServer | undefined>;
  /** `ipset restore -exist` lines. */
  setAdds: string[];
  setDels: string[];
  /** `ip -batch` lines. */
  addressAdds: string[];
  addressDels: string[];
}

const bump = (m: Map<string, number>, k: string, by: number): void => {
  const n = (m.get(k) ?? 0) + by;
  if (n === 0) m.delete(k);
  else m.set(k, n);
};

export class IpvsHoldings {
  readonly ports = new Map<string, HeldPort>();
  private readonly entries = new Map<string, number>();
  private readonly addresses = new Map<string, number>();
  /** vsKey -> port key -> virtual server (conflicting services may share one key: the last port wins). */
  private readonly servers = new Map<string, Map<string, VirtualServer>>();

  readonly family: Family;

  constructor(family: Family) {
    this.family = family;
  }

  private count(key: string, p: IpvsPort, sign: 1 | -1): void {
    for (const [set, e] of p.entries) bump(this.entries, `${set} ${e}`, sign);
    for (const ip of p.addresses) bump(this.addresses, ip, sign);
    for (const [k, vs] of p.virtualServers) {
      let holders = this.servers.get(k);
      if (holders === undefined) this.servers.set(k, (holders = new Map()));
      if (sign > 0) holders.set(key, vs);
      else {
        holders.delete(key);
        if (holders.size === 0) this.servers.delete(k);
      }
    }
  }

  /** Records `next` (undefined: the port is gone) as applied. */
  apply(next: ReadonlyMap<string, HeldPort | undefined>): void {
    for (const [k, p] of next) {
      const old = this.ports.get(k);
      if (old !== undefined) this.count(k, old.port, -1);
      if (p === undefined) this.ports.delete(k);
      else {
        this.ports.set(k, p);
        this.count(k, p.port, 1);
      }
    }
  }

  /** Every virtual server held, as one map (what draining re-plans against). */
  virtualServers(): Map<string, VirtualServer> {
    const out = new Map<string, VirtualServer>();
    for (const [k, holders] of this.servers) out.set(k, lastHolder(holders)!);
    return out;
  }

  /** What applying `next` changes in the kernel, without recording it. */
  plan(next: ReadonlyMap<string, HeldPort | undefined>): IpvsPortChanges {
    const entryDelta = new Map<string, number>();
    const addressDelta = new Map<string, number>();
    const touched = new Set<string>();
    for (const [k, p] of next) {
      const old = this.ports.get(k)?.port;
      for (const [set, e] of old?.entries ?? []) bump(entryDelta, `${set} ${e}`, -1);
      for (const [set, e] of p?.port.entries ?? []) bump(entryDelta, `${set} ${e}`, 1);
      for (const ip of old?.addresses ?? []) bump(addressDelta, ip, -1);
      for (const ip of p?.port.addresses ?? []) bump(addressDelta, ip, 1);
      for (const vs of [...(old?.virtualServers.keys() ?? []), ...(p?.port.virtualServers.keys() ?? [])]) touched.add(vs);
    }
    const out: IpvsPortChanges = { virtualServers: new Map(), setAdds: [], setDels: [], addressAdds: [], addressDels: [] };
    for (const [e, d] of entryDelta) {
      const was = this.entries.get(e) ?? 0;
      const [set, entry] = [e.slice(0, e.indexOf(' ')), e.slice(e.indexOf(' ') + 1)];
      if (was === 0 && was + d > 0) out.setAdds.push(`add ${set} ${canonicalEntry(entry)}`);
      else if (was > 0 && was + d === 0) out.setDels.push(`del ${set} ${canonicalEntry(entry)}`);
    }
    const gone = new Set<string>();
    const fresh = new Set<string>();
    for (const [ip, d] of addressDelta) {
      const was = this.addresses.get(ip) ?? 0;
      if (was === 0 && was + d > 0) fresh.add(ip);
      else if (was > 0 && was + d === 0) gone.add(ip);
    }
    const lines = planAddresses(gone, fresh, this.family);
    out.addressAdds = lines.adds;
    out.addressDels = lines.deletions;
    for (const k of touched) {
      const holders = new Map(this.servers.get(k) ?? []);
      for (const portKey of next.keys()) holders.delete(portKey);
      for (const [portKey, p] of next) {
        const vs = p?.port.virtualServers.get(k);
        if (vs !== undefined) holders.set(portKey, vs);
      }
      out.virtualServers.set(k, lastHolder(holders));
    }
    return out;
  }
}

function lastHolder(holders: ReadonlyMap<string, VirtualServer>): VirtualServer | undefined {
  let best: string | undefined;
  for (const k of holders.keys()) if (best === undefined || k > best) best = k;
  return best === undefined ? undefined : holders.get(best);
}
