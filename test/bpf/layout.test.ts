// The TypeScript mirror of bpf/include/layout.h agrees with the BTF clang emitted for it:
// every struct's size, and every field's name, offset and size.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { CT, DROP_REASONS, LAYOUT_VERSION, LAYOUTS, SY_DROP_MAX } from '../../control/bpf/layout.ts';
import { buildDir } from './objects.ts';

interface BtfType {
  id: number;
  kind: string;
  name: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: Array<{ name: string; type_id: number; bits_offset: number }>;
}

function btfTypes(object: string): BtfType[] {
  const json = execFileSync('bpftool', ['btf', 'dump', 'file', object, 'format', 'raw', '-j']).toString();
  return (JSON.parse(json) as { types: BtfType[] }).types;
}

function sizeOf(types: Map<number, BtfType>, id: number): number {
  const t = types.get(id);
  if (t === undefined) throw new Error(`BTF type ${id} missing`);
  if (t.size !== undefined) return t.size;
  if (t.kind === 'ARRAY') return (t.nr_elems ?? 0) * sizeOf(types, t.type_id!);
  if (t.type_id !== undefined) return sizeOf(types, t.type_id); // typedef, const, volatile
  throw new Error(`BTF type ${id} (${t.kind}) has no size`);
}

describe('map layouts', () => {
  const objects = readdirSync(buildDir).filter((f) => f.endsWith('.o'));
  const structs = new Map<string, { type: BtfType; types: Map<number, BtfType> }>();
  for (const object of objects) {
    const all = btfTypes(`${buildDir}${object}`);
    const byId = new Map(all.map((t) => [t.id, t]));
    for (const t of all) if (t.kind === 'STRUCT' && t.name.startsWith('sy_')) structs.set(t.name, { type: t, types: byId });
  }

  for (const layout of LAYOUTS) {
    it(`struct ${layout.cName} matches its BTF`, () => {
      const found = structs.get(layout.cName);
      assert.ok(found, `struct ${layout.cName} is in no object's BTF (is it used by a map?)`);
      assert.equal(layout.size, found.type.size, 'size');
      const members = found.type.members ?? [];
      assert.deepEqual(
        layout.fields.map((f) => ({ name: f.name, offset: f.offset, size: f.codec.size })),
        // C's snake_case fields are camelCase in TypeScript.
        members.map((m) => ({ name: m.name.replace(/_([a-z0-9])/g, (_s, c: string) => c.toUpperCase()), offset: m.bits_offset / 8, size: sizeOf(found.types, m.type_id) })),
      );
    });
  }

  it('the layout version agrees with SY_LAYOUT_VERSION', () => {
    const header = readFileSync(new URL('../../bpf/include/layout.h', import.meta.url), 'utf8');
    assert.equal(Number(/#define SY_LAYOUT_VERSION (\d+)/.exec(header)?.[1]), LAYOUT_VERSION);
  });

  it('the drop reasons agree with enum sy_drop_reason and the CT flags with SY_CT_*', () => {
    const header = readFileSync(new URL('../../bpf/include/layout.h', import.meta.url), 'utf8');
    const reasons = [...header.matchAll(/^\tSY_DROP_(\w+) = (\d+),/gm)].filter((m) => m[1] !== 'MAX').map((m) => [Number(m[2]), m[1]!.toLowerCase().replaceAll('_', '-')]);
    assert.deepEqual(reasons, DROP_REASONS.map((r, i) => [i, r]));
    assert.equal(Number(/SY_DROP_MAX = (\d+)/.exec(header)?.[1]), SY_DROP_MAX);
    const flags = Object.fromEntries([...header.matchAll(/^#define SY_CT_(\w+)\s+\(1U << (\d+)\)/gm)].map((m) => [m[1]!, 1 << Number(m[2])]));
    assert.deepEqual(flags, CT);
  });

  // Internal structs (the parser's tuple, passed to a subprogram) reach the BTF too; the rule is
  // that every layout the header declares is mirrored.
  it('every struct layout.h declares has a mirror', () => {
    const header = readFileSync(new URL('../../bpf/include/layout.h', import.meta.url), 'utf8');
    const declared = [...header.matchAll(/^struct (sy_\w+) \{/gm)].map((m) => m[1]!);
    assert.ok(declared.length > 10, 'the header declares its structs');
    const mirrored = new Set(LAYOUTS.map((l) => l.cName));
    assert.deepEqual(declared.filter((n) => !mirrored.has(n)), []);
  });
});
