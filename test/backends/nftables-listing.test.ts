// The full sync's view of the kernel: nft's terse listing parsed, and renderFull against it
// rewriting only what differs. Pure (the lab test holds the same against a real table).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileNftables, nftAddressSet } from '../../control/backends/nftables/compile.ts';
import { parseListingText, parseNftDuration, type ExistingTable } from '../../control/backends/nftables/listing.ts';
import { renderFull, setSignature } from '../../control/backends/nftables/render.ts';
import { kubeProxyTestCluster } from '../cases/kube-proxy-cluster.ts';

const LISTING = `table ip kube-proxy {
\tcomment "rules for kube-proxy"
\tset cluster-ips {
\t\ttype ipv4_addr
\t\tcomment "Active ClusterIPs"
\t}

\tmap service-ips {
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\tcomment "ClusterIP, ExternalIP and LoadBalancer IP traffic"
\t}

\tset affinity-HEH3GNQZ-ns6/sticky/tcp/p80__10.180.0.7/80 {
\t\ttype ipv4_addr
\t\tsize 65535
\t\tflags dynamic,timeout
\t\ttimeout 3h
\t}

\tchain nat-prerouting {
\t\ttype nat hook prerouting priority -100; policy accept;
\t\tjump services
\t}

\tchain services {
\t\tip daddr . meta l4proto . th dport vmap @service-ips
\t}

\tchain empty {
\t}
}
`;

/** The listing `nft -t -y list table` would give for a compiled table, built from it. */
function listingOf(c: ReturnType<typeof compileNftables>): ExistingTable {
  return {
    chains: new Map([...c.chains].map(([name, rules]) => [name, { decl: c.baseChains.get(name) ?? '', rules }])),
    sets: new Map([...c.sets].map(([name, s]) => [name, setSignature(s)])),
  };
}

describe('nftables listing', () => {
  it('parses nft durations', () => {
    assert.equal(parseNftDuration('3h'), 10800);
    assert.equal(parseNftDuration('1d2h3m4s'), 93784);
    assert.equal(parseNftDuration('1m39s992ms'), 99);
    assert.throws(() => parseNftDuration('3 hours'), /not an nft duration/);
  });

  it('parses chains with their hooks and rules, and sets with their signatures', () => {
    const t = parseListingText(LISTING);
    assert.deepEqual([...t.chains], [
      ['nat-prerouting', { decl: 'type nat hook prerouting priority -100', rules: ['jump services'] }],
      ['services', { decl: '', rules: ['ip daddr . meta l4proto . th dport vmap @service-ips'] }],
      ['empty', { decl: '', rules: [] }],
    ]);
    assert.equal(t.sets.get('cluster-ips'), setSignature({ kind: 'set', type: 'ipv4_addr', flags: [], timeoutSeconds: 0 }));
    assert.equal(t.sets.get('service-ips'), setSignature({ kind: 'map', type: 'ipv4_addr . inet_proto . inet_service : verdict', flags: [], timeoutSeconds: 0 }));
    assert.equal(t.sets.get('affinity-HEH3GNQZ-ns6/sticky/tcp/p80__10.180.0.7/80'), setSignature({ kind: 'set', type: 'ipv4_addr', flags: ['timeout'], timeoutSeconds: 10800 }));
  });

  it('writes addresses as nft prints them', () => {
    assert.equal(nftAddressSet(['203.0.113.0/25']), '203.0.113.0/25');
    assert.equal(nftAddressSet(['203.0.113.0/25', '10.0.0.1/32', '198.51.100.0/24']), '{ 10.0.0.1, 198.51.100.0/24, 203.0.113.0/25 }');
    assert.equal(nftAddressSet(['fd00::/8', '2001:db8:0:0::/64']), '{ 2001:db8::/64, fd00::/8 }');
  });
});

describe('renderFull against a listing', () => {
  const compiled = compileNftables(kubeProxyTestCluster().state(), 4);

  it('a table that holds exactly what is wanted gets no chain rewritten, only its static sets refilled', () => {
    const tx = renderFull(compiled, listingOf(compiled));
    assert.deepEqual([tx.chainsWritten, tx.chainsDeleted], [0, 0]);
    assert.doesNotMatch(tx.text, /^(flush chain|add rule|delete)/m);
    assert.doesNotMatch(tx.text, /flush set ip kube-proxy affinity-/, 'affinity sets keep what the kernel wrote');
  });

  it('rewrites a chain whose rules differ, adds a missing one and deletes a foreign one', () => {
    const have = listingOf(compiled);
    const chains = new Map(have.chains);
    const [changed, missing] = [...compiled.chains.keys()].filter((c) => c.startsWith('service-'));
    chains.set(changed!, { decl: '', rules: ['counter'] });
    chains.delete(missing!);
    chains.set('left-over', { decl: '', rules: [] });
    const tx = renderFull(compiled, { chains, sets: have.sets });
    assert.deepEqual([tx.chainsWritten, tx.chainsDeleted], [2, 1]);
    assert.match(tx.text, new RegExp(`^flush chain ip kube-proxy ${changed!.replace(/[/.]/g, '\\$&')}$`, 'm'));
    assert.match(tx.text, new RegExp(`^add chain ip kube-proxy ${missing!.replace(/[/.]/g, '\\$&')}$`, 'm'));
    assert.match(tx.text, /^delete chain ip kube-proxy left-over$/m);
  });

  it('a set declared differently is recreated and the chains naming it are rewritten', () => {
    const have = listingOf(compiled);
    const sets = new Map(have.sets);
    const [affinity] = [...compiled.sets.keys()].filter((s) => s.startsWith('affinity-'));
    sets.set(affinity!, setSignature({ kind: 'set', type: 'ipv4_addr', flags: ['timeout'], timeoutSeconds: 60 }));
    const tx = renderFull(compiled, { chains: have.chains, sets });
    const users = [...compiled.chains].filter(([, rules]) => rules.some((r) => r.includes(`@${affinity}`))).map(([c]) => c);
    assert.ok(users.length >= 2, 'the service chain reads it, the endpoint chain updates it');
    assert.equal(tx.chainsWritten, users.length);
    const lines = tx.text.split('\n');
    const deleteAt = lines.indexOf(`delete set ip kube-proxy ${affinity}`);
    assert.ok(deleteAt > 0);
    for (const c of users) assert.ok(lines.indexOf(`flush chain ip kube-proxy ${c}`) < deleteAt, `${c} is flushed before the set goes`);
  });
});
