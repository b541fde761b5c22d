// The BPF filesystem: where maps and programs are pinned so they outlive the agent.
import { mkdirSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { BpffsMissingError } from './errors.ts';

/** BPF_FS_MAGIC from linux/magic.h. */
const BPF_FS_MAGIC = 0xcafe4a11;

export const DEFAULT_BPFFS = '/sys/fs/bpf';

/** The filesystem type of the nearest existing ancestor of `path`. */
function fsTypeOf(path: string): number {
  let current = path;
  for (;;) {
    try {
      return statfsSync(current).type;
    } catch (e) {
      const parent = dirname(current);
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || parent === current) throw e;
      current = parent;
    }
  }
}

export function isOnBpffs(path: string): boolean {
  return fsTypeOf(path) === BPF_FS_MAGIC;
}

/**
 * Makes sure `dir` exists on a BPF filesystem, creating it (and parents) if needed.
 * Throws BpffsMissingError, naming the fix, when the path is on another filesystem.
 */
export function ensurePinDir(dir: string): void {
  let type: number;
  try {
    type = fsTypeOf(dir);
  } catch (e) {
    throw new BpffsMissingError(dir, (e as Error).message);
  }
  if (type !== BPF_FS_MAGIC) {
    throw new BpffsMissingError(dir, `filesystem type 0x${type.toString(16)}`);
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}
