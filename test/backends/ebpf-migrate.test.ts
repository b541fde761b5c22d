// Layout version 1 -> 2 in place: an agent of the new layout finds the pins an older agent left,
// migrates them, and the flows those maps carried keep their backend and their reverse NAT.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { progTestRun } from '../../control/bpf/attach.ts';
import { bytes, encode, u32 } from '../../control/bpf/codec.ts';
import { backend, CT, ctKey, ctValue, meta, revNat, type CtKey } from '../../control/bpf/layout.ts';
import { BpfMap, MAP_TYPE } from '../../control/bpf/map.ts';
import { native } from '../../control/bpf/native.ts';
import { LoadedObject } from '../../control/bpf/object.ts';
import { EbpfDatapath } from '../../control/backends/ebpf/datapath.ts';
import { buildPacket, parsePacket, PROTO } from '../packet.ts';
import { runPrefix } from '../lab/names.ts';
import { teardownNamesSync } from '../lab/sweep.ts';
import { buildDir } from '../bpf/objects.ts';
import { datapathObject } from './ebpf-lab.ts';

const prefix = `${runPrefix()}-migrate`;
const BPF_F_NO_COMMON_LRU = 1 << 1;
const SIZES = { sy_backends: 1024, sy_revnat: 1024, sy_ct: 4096 };
const CLIENT = '10.244.0.7';
const VIP = '10.96.0.10';
const BACKEND = '10.244.1.5';


/** What a v1 agent left: one established flow (forward and reply entries), its backend and frontend. */
function pinV1(pinDir: string): void {
  const v1 = LoadedObject.load(`${buildDir}fixtures/datapath-v1-maps.o`, { pinDir, maxEntries: SIZES });
  try {
    v1.map('sy_meta', u32, meta).set(0, { layoutVersion: 1 });
    v1.map('sy_backends', u32, backend).set(5, { addr: BACKEND, port: 8080, proto: PROTO.TCP, family: 4, flags: 0, serviceId: 1 });
    v1.map('sy_revnat', u32, revNat).set(3, { addr: VIP, port: 80, family: 4, flags: 0 });
    const ct = v1.map('sy_ct', bytes(ctKey.size), bytes(ctValue.size));
    const now = process.hrtime.bigint();
    const value = (flags: number): Buffer => encode(ctValue, { natAddr: '0.0.0.0', natPort: 0, flags, backendId: 5, revNatId: 3, serviceId: 1, created: now, lastSeen: now });
    const key = (k: CtKey, dir: number): Buffer => {
      const b = encode(ctKey, k);
      b[38] = dir;
      return b;
    };
    ct.set(key({ saddr: CLIENT, daddr: VIP, sport: 40000, dport: 80, proto: PROTO.TCP, family: 4 }, 0), value(0));
    ct.set(key({ saddr: BACKEND, daddr: CLIENT, sport: 8080, dport: 40000, proto: PROTO.TCP, family: 4 }, 1), value(0));
  } finally {
    v1.close();
  }
}

function open(pinDir: string): EbpfDatapath {
  const dp = EbpfDatapath.open({ object: datapathObject, pinDir, maxEntries: SIZES });
  dp.configure({ nodeIp4: '10.254.0.11', nodeIp6: 'fd00:254::b', snatPortMin: 61000, snatPortMax: 65535, flags: 0, ctTimeoutTcpNs: 3_600_000_000_000n, ctTimeoutUdpNs: 60_000_000_000n, hostNetnsCookie: 0n });
  return dp;
}

/** The flow's next packet and its answer, through the new programs. */
function assertFlowKept(dp: EbpfDatapath): void {
  const out = parsePacket(progTestRun(dp.programFd('sy_from_pod'), buildPacket({ src: CLIENT, dst: VIP, proto: 'tcp', sport: 40000, dport: 80, tcpFlags: 0x10 })).data);
  assert.equal(`${out.dst}:${out.dport}`, `${BACKEND}:8080`, 'the established flow keeps its backend');
  const back = parsePacket(progTestRun(dp.programFd('sy_to_pod'), buildPacket({ src: BACKEND, dst: CLIENT, proto: 'tcp', sport: 8080, dport: 40000, tcpFlags: 0x10 })).data);
  assert.equal(`${back.src}:${back.sport}`, `${VIP}:80`, 'its answers are translated back');
  assert.ok(out.l4ChecksumOk && back.l4ChecksumOk);
}

describe('datapath layout migration', () => {
  after(() => teardownNamesSync(prefix));

  it('layout 1 pins are migrated in place: flows keep their backend and reverse NAT, old entries go once attached', () => {
    const pinDir = `/sys/fs/bpf/${prefix}-v1`;
    pinV1(pinDir);
    const dp = open(pinDir);
    try {
      assert.deepEqual(dp.object.map('sy_backends', u32, backend).get(5), { addr: BACKEND, port: 8080, proto: PROTO.TCP, family: 4, flags: 0, serviceId: 1 });
      assert.equal(dp.object.map('sy_meta', u32, meta).get(0)?.layoutVersion, 2);
      assert.ok(existsSync(`${pinDir}/sy_backends_layout1`), 'the old maps stay until the new programs are attached');
      assertFlowKept(dp);
      assert.equal(dp.finishMigration(), 1, 'the one v1 reply entry is moved');
      assert.ok(!existsSync(`${pinDir}/sy_backends_layout1`) && !existsSync(`${pinDir}/sy_revnat_layout1`));
      const ct = dp.object.map('sy_ct', bytes(ctKey.size), bytes(ctValue.size)).entries();
      assert.equal(ct.length, 2, 'one entry per direction, none left in the old form');
      assert.ok(ct.every(([k]) => k[38] === 0));
      assert.equal(ct.filter(([, v]) => (v.readUInt16LE(18) & CT.REPLY) !== 0).length, 1);
      assertFlowKept(dp);
      assert.equal(dp.finishMigration(), 0, 'finishing twice does nothing');
    } finally {
      dp.close();
    }
    // The next start is an ordinary adoption.
    const again = open(pinDir);
    try {
      assertFlowKept(again);
    } finally {
      again.close();
    }
  });

  it('an agent killed between the steps finishes the migration on its next start', () => {
    const pinDir = `/sys/fs/bpf/${prefix}-half`;
    pinV1(pinDir);
    open(pinDir).close(); // migrated, never attached: the v1 pins and entries are still there
    assert.ok(existsSync(`${pinDir}/sy_revnat_layout1`));
    const dp = open(pinDir);
    try {
      assertFlowKept(dp);
      assert.equal(dp.finishMigration(), 1);
      assertFlowKept(dp);
    } finally {
      dp.close();
    }
  });
});

describe('sy_ct_syn from the common LRU list to per-CPU lists', () => {
  after(() => teardownNamesSync(`${prefix}-syn`));

  it('a handshake table pinned with the common list is replaced, its handshakes kept', () => {
    const pinDir = `/sys/fs/bpf/${prefix}-syn`;
    open(pinDir).close(); // an agent's pins, then its handshake table as an older agent made it
    const pin = `${pinDir}/sy_ct_syn`;
    rmSync(pin);
    const fd = native().mapCreate(MAP_TYPE.LRU_HASH, ctKey.size, ctValue.size, 4096, 'sy_ct_syn');
    const key = { saddr: CLIENT, daddr: VIP, sport: 40001, dport: 80, proto: PROTO.TCP, family: 4 } as const;
    const now = process.hrtime.bigint();
    try {
      native().objPin(fd, pin);
      const old = BpfMap.fromPin(pin, ctKey, ctValue);
      old.set(key, { natAddr: '0.0.0.0', natPort: 0, flags: 0, backendId: 5, revNatId: 3, serviceId: 1, created: now, lastSeen: now });
      old.close();
    } finally {
      native().closeFd(fd);
    }
    assert.equal(BpfMap.pinnedInfo(pin).flags & BPF_F_NO_COMMON_LRU, 0);
    const dp = open(pinDir);
    try {
      assert.notEqual(BpfMap.pinnedInfo(pin).flags & BPF_F_NO_COMMON_LRU, 0, 'the new table has per-CPU LRU lists');
      assert.equal(dp.object.map('sy_ct_syn', ctKey, ctValue).get(key)?.backendId, 5, 'the handshake moved to the new table');
      assert.deepEqual(readdirSync(pinDir).filter((n) => n.startsWith('sy_ct_syn')), ['sy_ct_syn'], 'the old table is unpinned');
    } finally {
      dp.close();
    }
    open(pinDir).close(); // the next start reuses the new pin
  });
});
