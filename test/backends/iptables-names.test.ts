// kube-proxy's chain names, reproduced exactly (values from the issue and kube-proxy's tests).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { base32, endpointChain, externalChain, firewallChain, serviceChain, serviceLocalChain } from '../../control/backends/iptables/names.ts';
import { endpointObjects, servicePortBase, servicePortObjects } from '../../control/backends/nftables/names.ts';

describe('kube-proxy chain names', () => {
  it('base32 is RFC 4648 (Go\'s StdEncoding)', () => {
    assert.equal(base32(Buffer.from('foobar')), 'MZXW6YTBOI======');
    assert.equal(base32(Buffer.from('f')), 'MY======');
  });

  it('"ns1/svc1:p80" + "tcp" gives KUBE-SVC-XPGD46QRK7WJZT7O', () => {
    assert.equal(serviceChain('ns1/svc1:p80', 'TCP'), 'KUBE-SVC-XPGD46QRK7WJZT7O');
    assert.equal(serviceLocalChain('ns1/svc1:p80', 'TCP'), 'KUBE-SVL-XPGD46QRK7WJZT7O');
    assert.equal(externalChain('ns1/svc1:p80', 'TCP'), 'KUBE-EXT-XPGD46QRK7WJZT7O');
    assert.equal(firewallChain('ns1/svc1:p80', 'TCP'), 'KUBE-FW-XPGD46QRK7WJZT7O');
  });

  it('values from kube-proxy\'s own tests', () => {
    assert.equal(endpointChain('ns1/svc1:p80', 'TCP', '10.180.0.1:80'), 'KUBE-SEP-SXIVWICOYRO3J4NJ');
    assert.equal(serviceChain('ns2/svc2:p80', 'TCP'), 'KUBE-SVC-GNZBNJ2PO5MGZ6GT');
    assert.equal(externalChain('ns2/svc2:p80', 'TCP'), 'KUBE-EXT-GNZBNJ2PO5MGZ6GT');
    assert.equal(firewallChain('ns5/svc5:p80', 'TCP'), 'KUBE-FW-NUKIZ6OKUXPJNT4C');
  });

  it('KUBE-SEP adds "ip:port" to the hashed string', () => {
    assert.match(endpointChain('ns1/svc1:p80', 'TCP', '10.180.0.1:80'), /^KUBE-SEP-[A-Z2-7]{16}$/);
    assert.notEqual(endpointChain('ns1/svc1:p80', 'TCP', '10.180.0.1:80'), endpointChain('ns1/svc1:p80', 'TCP', '10.180.0.2:80'));
  });

  it('nftables: HASH8-ns/svc/proto/port, e.g. ULMVA6XW-ns1/svc1/tcp/p80', () => {
    assert.equal(servicePortBase('ns1', 'svc1', 'p80', 'TCP'), 'ULMVA6XW-ns1/svc1/tcp/p80');
  });

  it('nftables: values from kube-proxy\'s own tests', () => {
    assert.deepEqual(servicePortObjects('ns2', 'svc2', 'p80', 'TCP'), {
      service: 'service-42NFTM6N-ns2/svc2/tcp/p80',
      local: 'local-42NFTM6N-ns2/svc2/tcp/p80',
      external: 'external-42NFTM6N-ns2/svc2/tcp/p80',
      firewall: 'firewall-42NFTM6N-ns2/svc2/tcp/p80',
    });
    assert.equal(servicePortObjects('ns5', 'svc5', 'p80', 'TCP').firewall, 'firewall-HVFWP5L3-ns5/svc5/tcp/p80');
    assert.deepEqual(endpointObjects('ns1', 'svc1', 'p80', 'TCP', '10.180.0.1', 80), {
      chain: 'endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80',
      affinitySet: 'affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80',
    });
    assert.equal(endpointObjects('ns2', 'svc2', 'p80', 'TCP', '10.180.0.2', 80).chain, 'endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80');
  });

  it('nftables: IPv6 endpoints use dots for colons, long names are cut to fit 255 bytes', () => {
    assert.match(endpointObjects('ns1', 'svc1', 'p80', 'TCP', 'fd00:10:180::1', 80).chain, /^endpoint-[A-Z2-7]{8}-ns1\/svc1\/tcp\/p80__fd00\.10\.180\.\.1\/80$/);
    const long = 'x'.repeat(63);
    assert.ok(!servicePortBase(long, long, long, 'SCTP').endsWith('...'), 'a service port always fits');
    const ep = endpointObjects(long, long, long, 'SCTP', 'fd00:1111:2222:3333:4444:5555:6666:7777', 65535);
    assert.ok(ep.chain.endsWith('...') && ep.affinitySet.length <= 255, ep.affinitySet);
  });
});
