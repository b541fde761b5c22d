// Moving pinned maps of layout version 1 to version 2 without losing established flows.
//
// What changed: sy_backends and sy_revnat became arrays indexed by id (hash maps in v1), and a CT
// key no longer carries a direction byte (v1: byte 38 = 1 for reply entries; v2: the value's
// SY_CT_REPLY flag says it). Everything else keeps its layout, so libbpf reuses those pins as
// they are (sy_ct included: same type and sizes).
//
// The steps straddle the moment the new programs replace the old ones on the devices:
//  1. before loading (prepareV1): the two v1 hash maps' pins are moved aside (*_layout1), so libbpf
//     creates the arrays under the usual names;
//  2. after loading (migrateV1): the arrays are filled from the v1 maps, and every v1 reply entry
//     gets its v2 twin. The old programs, still attached, never look at the twins;
//  3. after attaching (finishV1): twins for reply entries the old programs made meanwhile, then
//     the v1 entries and the *_layout1 pins go.
// Each step can be repeated: an agent killed half way finishes on its next start.
import { existsSync, renameSync, unlinkSync } from 'node:fs';
import { bytes, u32, type Codec } from '../../bpf/codec.ts';
import { backend, CT, ctKey, ctValue, revNat, type Backend, type RevNat } from '../../bpf/layout.ts';
import { BpfMap } from '../../bpf/map.ts';
import type { LoadedObject } from '../../bpf/object.ts';

/** The v1 CT key's direction byte (struct sy_ct_key v1: saddr 16, daddr 16, ports 4, proto, family, dir, pad). */
const V1_DIR_OFFSET = 38;
const V1_REPLY = 1;
const CT_FLAGS_OFFSET = 18; // sy_ct_value.flags (u16), unchanged since v1
const MOVED = ['sy_backends', 'sy_revnat'] as const;

function v1Pin(pinDir: string, name: string): string {
  return `${pinDir}/${name}_layout1`; // bpffs refuses names with a dot
}

/** Step 1: moves the pins of the maps whose type changed out of libbpf's way. */
export function prepareV1(pinDir: string): void {
  for (const name of MOVED) {
    const pin = `${pinDir}/${name}`;
    if (existsSync(pin) && !existsSync(v1Pin(pinDir, name))) renameSync(pin, v1Pin(pinDir, name));
  }
}

/** Whether a migration from v1 is under way (step 3 still to do). */
export function v1Pending(pinDir: string): boolean {
  return MOVED.some((name) => existsSync(v1Pin(pinDir, name)));
}

/** Gives every v1 reply entry its v2 twin; returns how many it wrote. */
function twinReplies(ct: BpfMap<Buffer, Buffer>, deleteOld: boolean): number {
  let written = 0;
  for (const [key, value] of ct.entries()) {
    if (key[V1_DIR_OFFSET] !== V1_REPLY) continue;
    const twin = Buffer.from(key);
    twin[V1_DIR_OFFSET] = 0;
    const v = Buffer.from(value);
    v.writeUInt16LE(v.readUInt16LE(CT_FLAGS_OFFSET) | CT.REPLY, CT_FLAGS_OFFSET);
    ct.set(twin, v);
    written++;
    if (deleteOld) ct.delete(key);
  }
  return written;
}

function ctMap(object: LoadedObject): BpfMap<Buffer, Buffer> {
  return object.map('sy_ct', bytes(ctKey.size), bytes(ctValue.size));
}

/**
 * Step 2: fills the id-indexed arrays from the v1 hash maps and twins the reply entries. Throws
 * when an id does not fit the array (a v1 map filled to its very last id).
 */
export function migrateV1(object: LoadedObject, pinDir: string): { backends: number; revnat: number; replies: number } {
  const copy = <V>(name: string, codec: Codec<V>): number => {
    const old = BpfMap.fromPin(v1Pin(pinDir, name), u32, codec);
    const target = object.map(name, u32, codec);
    const limit = object.mapDescription(name).maxEntries;
    let n = 0;
    try {
      for (const [id, v] of old.entries()) {
        if (id >= limit) throw new RangeError(`${name} id ${id} does not fit the ${limit}-entry array of layout 2: raise its size`);
        target.set(id, v);
        n++;
      }
    } finally {
      old.close();
    }
    return n;
  };
  const backends = existsSync(v1Pin(pinDir, 'sy_backends')) ? copy<Backend>('sy_backends', backend) : 0;
  const revnat = existsSync(v1Pin(pinDir, 'sy_revnat')) ? copy<RevNat>('sy_revnat', revNat) : 0;
  return { backends, revnat, replies: twinReplies(ctMap(object), false) };
}

/** Undoes step 1 after a failed step 2 (the new arrays' pins removed), for the old agent to find its maps. */
export function abandonV1(pinDir: string): void {
  for (const name of MOVED) {
    if (!existsSync(v1Pin(pinDir, name))) continue;
    if (existsSync(`${pinDir}/${name}`)) unlinkSync(`${pinDir}/${name}`);
    renameSync(v1Pin(pinDir, name), `${pinDir}/${name}`);
  }
}

/** Step 3, once the new programs are attached: the last v1 entries and pins go. */
export function finishV1(object: LoadedObject, pinDir: string): number {
  const replies = twinReplies(ctMap(object), true);
  for (const name of MOVED) if (existsSync(v1Pin(pinDir, name))) unlinkSync(v1Pin(pinDir, name));
  return replies;
}
