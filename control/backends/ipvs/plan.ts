// From what the kernel lists to what it should hold, for IPVS mode. Pure.
// - Virtual and real servers: ipvsadm-restore commands. A real server that goes away is drained
//   first, as kube-proxy's graceful termination does: TCP keeps it at weight 0 until its last
//   connection is gone; UDP and SCTP delete it at once (expire_nodest_conn drops their flows).
// - ipsets: `ipset restore -exist` lines adding and deleting entries one by one.
// - kube-ipvs0: `ip -batch` lines binding and unbinding addresses.
import { hostPort, type Family } from '../../model/ip.ts';
import type { Protocol } from '../../model/types.ts';
import { DUMMY_DEVICE, vsKey, type IpSet, type VirtualServer } from './compile.ts';

export interface ListedRealServer {
  ip: string;
  port: number;
  weight: number;
  active: number;
  inactive: number;
}

export interface ListedVirtualServer {
  protocol: Protocol;
  address: string;
  port: number;
  scheduler: string;
  persistenceSeconds: number;
  realServers: Map<string, ListedRealServer>;
}

function splitHostPort(text: string): { ip: string; port: number } | undefined {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  return m === null ? undefined : { ip: m[1]!, port: Number(m[2]) };
}

/** `ipvsadm -L -n` -> virtual servers by vsKey (firewall-mark services are not ours and skipped). */
export function parseIpvsList(text: string): Map<string, ListedVirtualServer> {
  const out = new Map<string, ListedVirtualServer>();
  let current: ListedVirtualServer | undefined;
  for (const line of text.split('\n')) {
    const vs = /^(TCP|UDP|SCTP)\s+(\S+)\s+(\S+)(.*)$/.exec(line);
    if (vs !== null) {
      const hp = splitHostPort(vs[2]!);
      if (hp === undefined) continue;
      const persistent = /persistent (\d+)/.exec(vs[4]!);
      current = { protocol: vs[1] as Protocol, address: hp.ip, port: hp.port, scheduler: vs[3]!, persistenceSeconds: persistent ? Number(persistent[1]) : 0, realServers: new Map() };
      out.set(vsKey(current.protocol, hp.ip, hp.port), current);
      continue;
    }
    if (/^\S/.test(line)) current = undefined; // FWM services, headers
    const rs = /^\s+->\s+(\S+)\s+\S+\s+(\d+)\s+(\d+)\s+(\d+)/.exec(line);
    if (rs !== null && current !== undefined) {
      const hp = splitHostPort(rs[1]!);
      if (hp !== undefined) current.realServers.set(hostPort(hp.ip, hp.port), { ...hp, weight: Number(rs[2]), active: Number(rs[3]), inactive: Number(rs[4]) });
    }
  }
  return out;
}

export interface IpvsPlan {
  commands: string[];
  /** Real servers kept at weight 0 until their connections end. */
  draining: number;
}

function vsFlags(vs: VirtualServer): string {
  return `-s ${vs.scheduler}${vs.persistenceSeconds > 0 ? ` -p ${vs.persistenceSeconds}` : ''}`;
}

/**
 * ipvsadm-restore commands turning `current` into `desired`. `owned` says whether a listed
 * virtual server that is not desired is ours to delete (someone else's are left alone).
 */
export function planIpvs(current: ReadonlyMap<string, ListedVirtualServer>, desired: ReadonlyMap<string, VirtualServer>, owned: (key: string, vs: ListedVirtualServer) => boolean): IpvsPlan {
  const adds: string[] = [];
  const removals: string[] = [];
  let draining = 0;
  for (const [key, vs] of desired) {
    const have = current.get(key);
    if (have === undefined) adds.push(`-A ${key} ${vsFlags(vs)}`);
    else if (have.scheduler !== vs.scheduler || have.persistenceSeconds !== vs.persistenceSeconds) adds.push(`-E ${key} ${vsFlags(vs)}`);
    for (const [rsKey, rs] of vs.realServers) {
      const listed = have?.realServers.get(rsKey);
      if (listed === undefined) adds.push(`-a ${key} -r ${rsKey} -m -w ${rs.weight}`);
      else if (listed.weight !== rs.weight) adds.push(`-e ${key} -r ${rsKey} -m -w ${rs.weight}`);
    }
    for (const [rsKey, listed] of have?.realServers ?? []) {
      if (vs.realServers.has(rsKey)) continue;
      const graceful = vs.protocol === 'TCP' && listed.active + listed.inactive > 0;
      if (!graceful) removals.push(`-d ${key} -r ${rsKey}`);
      else {
        draining++;
        if (listed.weight !== 0) adds.push(`-e ${key} -r ${rsKey} -m -w 0`);
      }
    }
  }
  for (const [key, vs] of current) if (!desired.has(key) && owned(key, vs)) removals.push(`-D ${key}`);
  return { commands: [...adds, ...removals], draining };
}

/** `ipset save` -> set name -> { type, entries } for the sets named in `names`. */
export function parseIpsetSave(text: string, names: ReadonlySet<string>): Map<string, { type: string; entries: Set<string> }> {
  const out = new Map<string, { type: string; entries: Set<string> }>();
  for (const line of text.split('\n')) {
    const w = line.trim().split(/\s+/);
    if (w[0] === 'create' && names.has(w[1]!)) out.set(w[1]!, { type: w[2]!, entries: new Set() });
    else if (w[0] === 'add' && out.has(w[1]!)) out.get(w[1]!)!.entries.add(w[2]!);
  }
  return out;
}

/** ipset prints a single-address net without its prefix length. */
export function canonicalEntry(entry: string): string {
  return entry.replace(/\/(32|128)$/, '');
}

/** `ipset restore -exist` input turning `current` into `desired`: adds first, deletions after. */
export function planIpsets(current: ReadonlyMap<string, { type: string; entries: ReadonlySet<string> }>, desired: ReadonlyMap<string, IpSet>): { adds: string[]; deletions: string[] } {
  const adds: string[] = [];
  const deletions: string[] = [];
  for (const [name, set] of desired) {
    const have = current.get(name);
    if (have === undefined) adds.push(`create ${name} ${set.type} ${set.options}`);
    const want = new Set([...set.entries].map(canonicalEntry));
    for (const e of want) if (!have?.entries.has(e)) adds.push(`add ${name} ${e}`);
    for (const e of have?.entries ?? []) if (!want.has(e)) deletions.push(`del ${name} ${e}`);
  }
  return { adds, deletions };
}

/** `ip -batch` lines binding the desired addresses to kube-ipvs0 and unbinding the rest. */
export function planAddresses(current: ReadonlySet<string>, desired: ReadonlySet<string>, family: Family): { adds: string[]; deletions: string[] } {
  const len = family === 4 ? 32 : 128;
  const opts = family === 6 ? ' nodad' : '';
  return {
    adds: [...desired].filter((ip) => !current.has(ip)).map((ip) => `address add ${ip}/${len} dev ${DUMMY_DEVICE}${opts}`),
    deletions: [...current].filter((ip) => !desired.has(ip)).map((ip) => `address del ${ip}/${len} dev ${DUMMY_DEVICE}`),
  };
}
