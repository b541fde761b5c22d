// One semantic case with real packets, against what trace() says on node n0: shared by every
// datapath mode's test (eBPF, iptables, ...).
import assert from 'node:assert/strict';
import type { DesiredState } from '../../control/model/types.ts';
import { trace } from '../../control/trace/trace.ts';
import { podOf, type SemanticCase } from '../cases/semantics.ts';
import type { Lab } from '../lab/lab.ts';

export async function checkCase(lab: Lab, c: SemanticCase, state: DesiredState, options: { cgroup?: string; mode?: 'nftables' | 'ipvs' | 'ebpf' } = {}): Promise<void> {
  const { cgroup, mode } = options;
  const fromNode = 'node' in c.from;
  const netns = 'pod' in c.from ? lab.pod(c.from.pod).netns : fromNode ? lab.nodes[0]!.netns : lab.external.netns;
  const verdict = trace(state, { src: c.src, dst: c.dst, port: c.port, protocol: c.protocol }, { mode });
  const expected = (mode !== undefined ? c.inMode?.[mode] : undefined) ?? c.expect;
  assert.equal(verdict.verdict, expected.verdict, 'trace agrees with the table');
  const target = { proto: c.protocol === 'TCP' ? ('tcp' as const) : ('udp' as const), host: c.dst, port: c.port };
  // Silence can only be waited for; an answer or a refusal is waited for generously (a loaded
  // 2-core machine may take long to answer, which must not read as a DROP).
  const timeoutMs = verdict.verdict === 'DROP' || verdict.verdict === 'NO_SERVICE' ? 700 : 5000;
  const probe = (count: number) => lab.probe(netns, { targets: [target], count, timeoutMs, cgroup: fromNode ? cgroup : undefined });
  const nodeAddresses = new Set([...lab.nodes.flatMap((n) => [n.ipv4, n.ipv6]), ...lab.nodes.map((n) => `10.244.${n.index}.1`)]);
  // The node's own connection balanced at its socket (eBPF): the kernel picks the source address
  // for the route to the endpoint, not to the service (10.244.0.1 towards a pod of this node), so
  // an untranslated node client shows whichever of its addresses that is.
  const socketLb = fromNode && cgroup !== undefined;
  const n0 = lab.nodes[0]!;
  const ownAddresses = new Set([n0.ipv4, n0.ipv6, `10.244.${n0.index}.1`]);
  const check = (r: Awaited<ReturnType<typeof probe>>[number]): string | undefined => {
    if (verdict.verdict === 'FORWARD') {
      assert.ok(r.ok, `expected an answer, got ${r.ok ? '' : r.error}`);
      const answered = verdict.endpoints.find((e) => podOf(e.ip) === r.reply.pod);
      assert.ok(answered, `${r.reply.pod} answered; trace allows ${verdict.endpoints.map((e) => podOf(e.ip)).join(', ')}`);
      assert.equal(r.reply.port, answered.port, 'the target port');
      // IPVS: MASQUERADE takes the source the kernel selects, and for IPv6 that may be a service
      // address bound to kube-ipvs0 (kube-proxy's IPVS mode does the same).
      if (answered.sourceTranslated) assert.ok(nodeAddresses.has(r.reply.client) || (mode === 'ipvs' && ipvsBound(state).has(r.reply.client)), `the pod saw a node address, not ${r.reply.client}`);
      else if (socketLb) assert.ok(ownAddresses.has(r.reply.client), `the pod saw one of the node's own addresses, not ${r.reply.client}`);
      // IPVS binds service addresses to kube-ipvs0: a node connecting to one may get it as its source.
      else if (!(fromNode && mode === 'ipvs' && r.reply.client === c.dst)) assert.equal(r.reply.client, c.src, 'the pod saw the client address');
      return r.reply.pod;
    } else if (verdict.verdict === 'REJECT') {
      assert.ok(!r.ok && r.error === 'ECONNREFUSED', `expected a refusal, got ${r.ok ? `an answer from ${r.reply.pod}` : r.error}`);
    } else if (verdict.verdict === 'DROP') {
      assert.ok(!r.ok && r.error === 'ETIMEDOUT', `expected silence, got ${r.ok ? `an answer from ${r.reply.pod}` : r.error}`);
    } else {
      assert.ok(!r.ok || !/^n\dp\d$/.test(r.reply.pod), 'no pod answers a packet that matches no service');
    }
    return undefined;
  };
  if (verdict.verdict !== 'FORWARD') {
    for (const r of await probe(1)) check(r);
    return;
  }
  // Every endpoint trace names must be reached, and none other: new flows (one per connection)
  // until each has answered. Choices are random, so the bound is set where missing one of k
  // endpoints by chance is below 1e-20; ClientIP affinity keeps one client on one endpoint.
  const wanted = new Set(verdict.endpoints.map((e) => podOf(e.ip)));
  const seen = new Set<string>();
  const sticky = verdict.affinityTimeoutSeconds > 0;
  for (let sent = 0; sent < 240 && (sticky ? sent < 6 : seen.size < wanted.size); sent += 8) {
    for (const r of await probe(sticky ? 6 : 8)) seen.add(check(r)!);
  }
  if (sticky) assert.equal(seen.size, 1, `ClientIP affinity: one client, one endpoint (${[...seen].join(', ')})`);
  else assert.deepEqual([...seen].sort(), [...wanted].sort(), 'every endpoint trace names answered');
}

/** Routes the external client uses for LB and external IPs (through node n0, as a router would). */
export async function routeServiceIpsViaNode0(lab: Lab, ips: readonly string[]): Promise<void> {
  await lab.exec(lab.external.netns, 'ip', ['-batch', '-'], ips.map((ip) => `route add ${ip}/32 via ${lab.nodes[0]!.ipv4}`).join('\n') + '\n');
}

/** The addresses IPVS mode binds to kube-ipvs0: every ClusterIP, external IP and LB IP. */
function ipvsBound(state: DesiredState): Set<string> {
  const out = new Set<string>();
  for (const fs of state.families.values()) {
    for (const sp of fs.servicePorts.values()) {
      out.add(sp.clusterIP);
      for (const a of [...sp.externalIPs, ...sp.loadBalancerIPs]) out.add(a);
    }
  }
  return out;
}
