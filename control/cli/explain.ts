// Errors that name their cause: a refused bpf() call names the capabilities it needed, a pin that
// cannot be read says whether it is missing or not ours to read.
import { statSync } from 'node:fs';
import { BpfError } from '../bpf/errors.ts';

const CAPS = 'needs root, or CAP_BPF and CAP_NET_ADMIN (with CAP_SYS_ADMIN for the BPF filesystem and network namespaces)';

/** The error's message, with the capabilities it lacked when the kernel said EPERM / EACCES. */
export function explain(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  const code = e instanceof BpfError ? e.code : (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EPERM' || code === 'EACCES' || /Operation not permitted|Permission denied/.test(message)) return `${message}: permission denied, ${CAPS}`;
  return message;
}

/** Why a pin cannot be opened: not pinned (and whether the directory exists at all) or no permission. */
export function pinProblem(dir: string, path: string): string | undefined {
  try {
    statSync(path);
    return undefined;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') return `${path}: permission denied (the pins are root's: run as root, or with CAP_BPF and read access to ${dir})`;
    try {
      statSync(dir);
    } catch (d) {
      const dcode = (d as NodeJS.ErrnoException).code;
      if (dcode === 'EACCES' || dcode === 'EPERM') return `${dir}: permission denied (the pins are root's: run as root, or with CAP_BPF and read access to ${dir})`;
      return `${dir} does not exist: no agent has pinned its maps there (is the agent's --bpffs-dir another?)`;
    }
    return `${path} is not pinned: is the agent's --bpffs-dir ${dir}, and is it in eBPF mode?`;
  }
}
