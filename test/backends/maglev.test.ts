// Maglev's promises, checked on the table builder: even spread, minimal disruption.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAGLEV_M, maglevTable } from '../../control/backends/ebpf/maglev.ts';

const names = (n: number, from = 0): string[] => Array.from({ length: n }, (_, i) => `10.244.${(i + from) >> 8}.${(i + from) & 255}|8080`);

describe('maglev table', () => {
  it('fills every slot and spreads them evenly (within 1% of M/N at M >= 100 N)', () => {
    for (const n of [1, 3, 10, 100]) {
      const t = maglevTable(names(n));
      const counts = new Array<number>(n).fill(0);
      for (const i of t) counts[i]!++;
      assert.ok(t.every((i) => i >= 0));
      const ideal = MAGLEV_M / n;
      for (const c of counts) assert.ok(Math.abs(c - ideal) / MAGLEV_M <= 0.01, `n=${n}: ${c} slots vs ${ideal.toFixed(0)}`);
    }
  });

  it('does not depend on the order of the backends', () => {
    const a = names(10);
    const ta = maglevTable(a);
    const tb = maglevTable([...a].reverse());
    for (let i = 0; i < MAGLEV_M; i++) assert.equal(a[ta[i]!], [...a].reverse()[tb[i]!]);
  });

  it('removing one backend moves under 1% of the survivors\' slots', () => {
    for (const n of [10, 100]) {
      const before = names(n);
      const after = before.filter((_, i) => i !== 3);
      const tb = maglevTable(before);
      const ta = maglevTable(after);
      let survivorsSlots = 0;
      let moved = 0;
      for (let i = 0; i < MAGLEV_M; i++) {
        const was = before[tb[i]!]!;
        if (was === before[3]) continue;
        survivorsSlots++;
        if (after[ta[i]!] !== was) moved++;
      }
      assert.ok(moved / survivorsSlots < 0.01, `n=${n}: ${((100 * moved) / survivorsSlots).toFixed(2)}% moved`);
    }
  });

  it('adding a backend takes its share mostly from the others, moving few flows between them', () => {
    const before = names(10);
    const after = [...before, ...names(1, 500)];
    const tb = maglevTable(before);
    const ta = maglevTable(after);
    let betweenOld = 0;
    for (let i = 0; i < MAGLEV_M; i++) if (after[ta[i]!] !== before[tb[i]!] && ta[i] !== 10) betweenOld++;
    assert.ok(betweenOld / MAGLEV_M < 0.01, `${betweenOld} slots moved between existing backends`);
  });

  it('refuses a table size that is not prime', () => assert.throws(() => maglevTable(['a'], 1000), /not prime/));
});
