// The nftables compiler's whole first transaction for kube-proxy's test-cluster shapes, against
// a checked-in golden file, and the incremental transaction for a one-endpoint change.
// UPDATE_GOLDEN=1 rewrites them after a deliberate change; review the diff like code.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { compileNftables } from '../../control/backends/nftables/compile.ts';
import { renderDiff, renderFull } from '../../control/backends/nftables/render.ts';
import { slice } from '../cases/objects.ts';
import { kubeProxyTestCluster } from '../cases/kube-proxy-cluster.ts';

function matchesGolden(name: string, text: string): void {
  const file = fileURLToPath(new URL(`./golden/${name}`, import.meta.url));
  if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, text);
  assert.equal(text, readFileSync(file, 'utf8'));
}

describe('nftables compiler golden output', () => {
  it('matches test/backends/golden/nftables-v4.nft (a new table)', () => {
    matchesGolden('nftables-v4.nft', renderFull(compileNftables(kubeProxyTestCluster().state(), 4), undefined).text);
  });

  it('matches test/backends/golden/nftables-v4-change.nft (svc5 loses an endpoint)', () => {
    const t = kubeProxyTestCluster();
    const before = compileNftables(t.state(), 4);
    t.upsertSlice(slice({ ns: 'ns5', name: 'svc5-x', service: 'svc5', ports: [{ name: 'p80', port: 80 }], endpoints: [{ ip: '10.180.0.4', node: 'other' }, { ip: '10.180.0.5', node: 'other' }] }));
    t.flush();
    const tx = renderDiff(before, compileNftables(t.state(), 4));
    assert.deepEqual([tx.chainsWritten, tx.chainsDeleted, tx.elementsAdded, tx.elementsDeleted], [1, 1, 0, 0]);
    matchesGolden('nftables-v4-change.nft', tx.text);
  });

  it('a diff of a table with itself is empty', () => {
    const state = kubeProxyTestCluster().state();
    assert.equal(renderDiff(compileNftables(state, 4), compileNftables(state, 4)).text, '');
  });
});
