// Binary codecs for map keys and values, laid out with C's alignment rules so that a
// TypeScript description of a struct produces the same bytes as the bpf/ header.
import { isIPv4, isIPv6 } from 'node:net';

/** Turns values into exactly `size` bytes and back. */
export interface Codec<T> {
  readonly size: number;
  readonly align: number;
  encodeInto(value: T, buf: Buffer, offset: number): void;
  decodeFrom(buf: Buffer, offset: number): T;
}

export function encode<T>(codec: Codec<T>, value: T): Buffer {
  const buf = Buffer.alloc(codec.size);
  codec.encodeInto(value, buf, 0);
  return buf;
}

export function decode<T>(codec: Codec<T>, buf: Buffer): T {
  if (buf.length < codec.size) throw new RangeError(`need ${codec.size} bytes, got ${buf.length}`);
  return codec.decodeFrom(buf, 0);
}

function scalar<T>(size: number, write: (b: Buffer, v: T, o: number) => void, read: (b: Buffer, o: number) => T): Codec<T> {
  return {
    size,
    align: size,
    encodeInto: (value, buf, offset) => write(buf, value, offset),
    decodeFrom: (buf, offset) => read(buf, offset),
  };
}

export const u8 = scalar<number>(1, (b, v, o) => b.writeUInt8(v, o), (b, o) => b.readUInt8(o));
/** Host order is little-endian on every architecture Switchyard builds for (x86-64, arm64). */
export const u16 = scalar<number>(2, (b, v, o) => b.writeUInt16LE(v, o), (b, o) => b.readUInt16LE(o));
export const u32 = scalar<number>(4, (b, v, o) => b.writeUInt32LE(v, o), (b, o) => b.readUInt32LE(o));
export const u64 = scalar<bigint>(8, (b, v, o) => b.writeBigUInt64LE(v, o), (b, o) => b.readBigUInt64LE(o));
/** Network order (__be16), e.g. a port. */
export const be16 = scalar<number>(2, (b, v, o) => b.writeUInt16BE(v, o), (b, o) => b.readUInt16BE(o));
export const be32 = scalar<number>(4, (b, v, o) => b.writeUInt32BE(v, o), (b, o) => b.readUInt32BE(o));

/** An IPv4 address held as __be32. */
export const ipv4: Codec<string> = {
  size: 4,
  align: 4,
  encodeInto(value, buf, offset) {
    if (!isIPv4(value)) throw new TypeError(`not an IPv4 address: ${value}`);
    const parts = value.split('.');
    for (let i = 0; i < 4; i++) buf[offset + i] = Number(parts[i]);
  },
  decodeFrom: (buf, offset) => `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`,
};

/** Expands an IPv6 address into its 16 bytes. */
export function ipv6Bytes(value: string): Buffer {
  if (!isIPv6(value)) throw new TypeError(`not an IPv6 address: ${value}`);
  let text = value;
  const out = Buffer.alloc(16);
  // A trailing dotted quad (::ffff:1.2.3.4) stands for the last two groups.
  const dotted = text.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (dotted?.[1] !== undefined) {
    const tail = dotted[1].split('.').map(Number);
    text = `${text.slice(0, -dotted[1].length)}${((tail[0]! << 8) | tail[1]!).toString(16)}:${((tail[2]! << 8) | tail[3]!).toString(16)}`;
  }
  const [head = '', rest] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const groups = rest === undefined ? headGroups : [...headGroups, ...Array(8 - headGroups.length - restGroups.length).fill('0'), ...restGroups];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** Formats 16 bytes as the canonical (RFC 5952) IPv6 text. */
export function formatIpv6(buf: Buffer, offset = 0): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(offset + i * 2));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** An IPv6 address held as 16 bytes in network order. */
export const ipv6: Codec<string> = {
  size: 16,
  align: 4,
  encodeInto: (value, buf, offset) => ipv6Bytes(value).copy(buf, offset),
  decodeFrom: (buf, offset) => formatIpv6(buf, offset),
};

/**
 * An address in `__be32 addr[4]`: IPv4 in the first 4 bytes (the rest zero), IPv6 in all 16.
 * Decoding guesses IPv4 when the last 12 bytes are zero; structs with a family field correct
 * that guess (see withFamily).
 */
export const addr16: Codec<string> = {
  size: 16,
  align: 4,
  encodeInto(value, buf, offset) {
    if (isIPv4(value)) ipv4.encodeInto(value, buf, offset);
    else ipv6.encodeInto(value, buf, offset);
  },
  decodeFrom(buf, offset) {
    for (let i = 4; i < 16; i++) if (buf[offset + i] !== 0) return formatIpv6(buf, offset);
    return ipv4.decodeFrom(buf, offset);
  },
};

/** A fixed-length C array of `count` elements. */
export function array<T>(element: Codec<T>, count: number): Codec<T[]> {
  return {
    size: element.size * count,
    align: element.align,
    encodeInto(values, buf, offset) {
      if (values.length > count) throw new RangeError(`at most ${count} elements, got ${values.length}`);
      values.forEach((v, i) => element.encodeInto(v, buf, offset + i * element.size));
    },
    decodeFrom(buf, offset) {
      const out: T[] = [];
      for (let i = 0; i < count; i++) out.push(element.decodeFrom(buf, offset + i * element.size));
      return out;
    },
  };
}

/** One member of a struct as described in TypeScript. */
export interface FieldSpec {
  readonly name: string;
  readonly codec: Codec<unknown>;
}

export interface FieldLayout extends FieldSpec {
  readonly offset: number;
}

/** A C struct: named fields at their C offsets, padded to its alignment. */
export interface StructCodec<T> extends Codec<T> {
  readonly cName: string;
  readonly fields: readonly FieldLayout[];
}

function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

/**
 * Describes `struct cName` field by field in declaration order. Fields named "pad*" are
 * written as zero and left out of decoded values; a missing field encodes as zero bytes.
 */
export function struct<T extends object>(cName: string, specs: readonly FieldSpec[]): StructCodec<T> {
  const fields: FieldLayout[] = [];
  let offset = 0;
  let align = 1;
  for (const spec of specs) {
    offset = alignUp(offset, spec.codec.align);
    fields.push({ ...spec, offset });
    offset += spec.codec.size;
    align = Math.max(align, spec.codec.align);
  }
  const size = alignUp(offset, align);
  return {
    cName,
    fields,
    size,
    align,
    encodeInto(value, buf, base) {
      const record = value as Record<string, unknown>;
      for (const f of fields) {
        const v = record[f.name];
        if (f.name.startsWith('pad') || v === undefined) continue;
        f.codec.encodeInto(v, buf, base + f.offset);
      }
    },
    decodeFrom(buf, base) {
      const out: Record<string, unknown> = {};
      for (const f of fields) {
        if (!f.name.startsWith('pad')) out[f.name] = f.codec.decodeFrom(buf, base + f.offset);
      }
      return out as T;
    },
  };
}

/** Re-reads the named address fields by the struct's own `family` field (4 or 6). */
export function withFamily<T extends { family: number }>(inner: StructCodec<T>, addressFields: readonly (keyof T & string)[]): StructCodec<T> {
  return {
    ...inner,
    decodeFrom(buf, base) {
      const out = inner.decodeFrom(buf, base);
      for (const name of addressFields) {
        const f = inner.fields.find((x) => x.name === name)!;
        (out as Record<string, unknown>)[name] = out.family === 6 ? formatIpv6(buf, base + f.offset) : ipv4.decodeFrom(buf, base + f.offset);
      }
      return out;
    },
  };
}

/** size bytes as they are: for maps read without their layout (e.g. an older version's). */
export function bytes(size: number): Codec<Buffer> {
  return { size, align: 1, encodeInto: (v, b, o) => void v.copy(b, o, 0, size), decodeFrom: (b, o) => Buffer.from(b.subarray(o, o + size)) };
}

/** Values of per-CPU maps: one element per possible CPU, each rounded up to 8 bytes. */
export function perCpu<T>(element: Codec<T>, cpus: number): Codec<T[]> {
  const stride = alignUp(element.size, 8);
  return {
    size: stride * cpus,
    align: 8,
    encodeInto(values, buf, offset) {
      values.forEach((v, i) => element.encodeInto(v, buf, offset + i * stride));
    },
    decodeFrom(buf, offset) {
      const out: T[] = [];
      for (let i = 0; i < cpus; i++) out.push(element.decodeFrom(buf, offset + i * stride));
      return out;
    },
  };
}
