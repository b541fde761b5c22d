// kube-proxy's nftables object names, reproduced exactly: every per-service object is a prefix
// ("service-", "local-", "external-", "firewall-", "endpoint-", "affinity-") on a readable base
// "ns/svc/proto/port" (plus "__ip/port" for an endpoint) led by the first 8 characters of the
// base32 sha256 of that base (kube-proxy's hashAndTruncate). Pure.
import { hash16 } from '../iptables/names.ts';

/** nftables names are at most 255 bytes; kube-proxy keeps 16 for the prefix. */
const BASE_MAX = 256 - 16;

function hashAndTruncate(base: string): string {
  const name = `${hash16(base).slice(0, 8)}-${base}`;
  return name.length > BASE_MAX ? `${name.slice(0, BASE_MAX - 3)}...` : name;
}

/** "ULMVA6XW-ns1/svc1/tcp/p80" for port p80/TCP of ns1/svc1. */
export function servicePortBase(namespace: string, name: string, portName: string, protocol: string): string {
  return hashAndTruncate(`${namespace}/${name}/${protocol.toLowerCase()}/${portName}`);
}

/**
 * "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80": the endpoint joins the base as "ip/port", an IPv6
 * address with its colons turned into dots (nft names allow neither ":" nor brackets).
 */
export function endpointBase(namespace: string, name: string, portName: string, protocol: string, ip: string, port: number): string {
  return hashAndTruncate(`${namespace}/${name}/${protocol.toLowerCase()}/${portName}__${ip.replaceAll(':', '.')}/${port}`);
}

export interface ServicePortObjects {
  service: string;
  local: string;
  external: string;
  firewall: string;
}

export function servicePortObjects(namespace: string, name: string, portName: string, protocol: string): ServicePortObjects {
  const base = servicePortBase(namespace, name, portName, protocol);
  return { service: `service-${base}`, local: `local-${base}`, external: `external-${base}`, firewall: `firewall-${base}` };
}

export function endpointObjects(namespace: string, name: string, portName: string, protocol: string, ip: string, port: number): { chain: string; affinitySet: string } {
  const base = endpointBase(namespace, name, portName, protocol, ip, port);
  return { chain: `endpoint-${base}`, affinitySet: `affinity-${base}` };
}
