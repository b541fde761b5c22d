// The iptables compiler's whole output for kube-proxy's test-cluster shapes, against a checked-in
// golden file. UPDATE_GOLDEN=1 rewrites it after a deliberate change; review the diff like code.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { compileIptables, renderRestore } from '../../control/backends/iptables/compile.ts';
import { kubeProxyTestCluster } from '../cases/kube-proxy-cluster.ts';

const golden = fileURLToPath(new URL('./golden/iptables-v4.rules', import.meta.url));

describe('iptables compiler golden output', () => {
  it('matches test/backends/golden/iptables-v4.rules', () => {
    const text = renderRestore(compileIptables(kubeProxyTestCluster().state(), 4, { randomFully: true }));
    if (process.env.UPDATE_GOLDEN === '1') writeFileSync(golden, text);
    assert.equal(text, readFileSync(golden, 'utf8'));
  });
});
