// sy_ct_syn's LRU lists became per CPU (BPF_F_NO_COMMON_LRU, layout.h's map definitions). libbpf
// reuses a pinned map only when its flags match, so a pin made with the common list is moved
// aside before the load and its handshakes copied into the new table after it; the programs still
// attached keep the old map until the new ones replace them (a handshake they start in that
// moment is lost, and the client's SYN retransmission starts it again).
import { existsSync, renameSync, unlinkSync } from 'node:fs';
import { bytes } from '../../bpf/codec.ts';
import { BpfMap } from '../../bpf/map.ts';
import type { LoadedObject } from '../../bpf/object.ts';

const NAME = 'sy_ct_syn';
const BPF_F_NO_COMMON_LRU = 1 << 1;

function asidePin(pinDir: string): string {
  return `${pinDir}/${NAME}_common_lru`;
}

/** Before the load: a pinned sy_ct_syn with the common LRU list is moved out of libbpf's way. */
export function prepareSynTable(pinDir: string): void {
  const pin = `${pinDir}/${NAME}`;
  if (!existsSync(pin) || existsSync(asidePin(pinDir))) return;
  if ((BpfMap.pinnedInfo(pin).flags & BPF_F_NO_COMMON_LRU) === 0) renameSync(pin, asidePin(pinDir));
}

/** After a failed load: the old table goes back where the agent before us looks for it. */
export function abandonSynTable(pinDir: string): void {
  if (!existsSync(asidePin(pinDir))) return;
  if (existsSync(`${pinDir}/${NAME}`)) unlinkSync(`${pinDir}/${NAME}`);
  renameSync(asidePin(pinDir), `${pinDir}/${NAME}`);
}

/** After the load: the handshakes of the old table are copied into the new one, and its pin goes. Returns how many. */
export function adoptSynTable(object: LoadedObject, pinDir: string): number {
  if (!existsSync(asidePin(pinDir))) return 0;
  const d = object.mapDescription(NAME);
  const old = BpfMap.fromPin(asidePin(pinDir), bytes(d.keySize), bytes(d.valueSize));
  const target = object.map(NAME, bytes(d.keySize), bytes(d.valueSize));
  let n = 0;
  try {
    for (const [k, v] of old.entries()) {
      target.set(k, v);
      n++;
    }
  } finally {
    old.close();
    target.close();
  }
  unlinkSync(asidePin(pinDir));
  return n;
}
