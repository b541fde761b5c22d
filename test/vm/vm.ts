// A throwaway VM on one of Debian's stock kernels (6.1, which has IPVS, and 5.10, the oldest
// kernel the eBPF datapath is held to), booted under qemu with TCG. It runs this machine's own userland:
// the root filesystem is shared read-only over 9p, and a small exchange directory carries the
// command in and its output and exit code out.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The 9p root's modules, in load order. Some exist only in newer kernels (netfs 5.13; the split
// virtio_pci_*_dev 5.14 and 5.18): a module a kernel lacks is skipped (its code is then inside
// another module or the kernel), the others must be there.
const MODULES = ['virtio_ring', 'virtio', '9pnet', '9pnet_virtio', 'netfs', 'fscache', '9p', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio_pci'];
const OPTIONAL_MODULES = new Set(['netfs', 'fscache', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev']);
const here = fileURLToPath(new URL('./', import.meta.url));

// The guest's CPU: Nehalem (x86-64-v2, no AVX), not "max". Debian's qemu 7.2 is the first whose TCG
// emulates AVX/AVX2, and under "max" Node 24 inside the guest aborted at random (V8 "Check failed:
// it->second.Size() > offset", two boots of three in CI), never on this machine's real CPU.
// Without AVX, V8, simdutf and the kernel take their SSE paths, which TCG has emulated for years.
const VM_CPU = process.env.SWITCHYARD_VM_CPU ?? 'Nehalem';

// TCG with one host thread for both vCPUs, not multi-threaded TCG (qemu's default on x86 hosts).
// Nehalem made the V8 aborts rarer, not gone: with MTTCG, `node main.ts --help` in the 6.1 guest
// died 5 times in 40 starts (SIGSEGV four times, the same V8 check once, ~2 s into start-up, while
// V8 writes and flushes freshly compiled code), an IPVS-mode agent once in 12. With thread=single
// it died 0 times in 25 (same guest, same image): the guest's cross-CPU code-modification and
// memory-ordering races are what MTTCG emulates imperfectly. The cost is one host core per VM,
// which CI's two VMs on a two-core machine never had to spare anyway.
const VM_ACCEL = process.env.SWITCHYARD_VM_ACCEL ?? 'tcg,thread=single';

export interface VmKernel {
  version: string;
  vmlinuz: string;
}

/** The Debian kernels the VM boots: 6.1 (bookworm's linux-image-amd64) and 5.10 (bullseye's), as .ci/setup installs them. */
export const VM_SERIES = ['6.1', '5.10'] as const;
export type VmSeries = (typeof VM_SERIES)[number];

/**
 * Debian's stock kernel of a series (e.g. 6.1 -> vmlinuz-6.1.0-57-amd64) if installed with its
 * modules, and qemu and busybox too; the newest of that series.
 */
export function findKernel(series: VmSeries = '6.1'): VmKernel | undefined {
  if (!existsSync('/boot') || !existsSync('/usr/bin/qemu-system-x86_64') || !existsSync('/bin/busybox')) return undefined;
  const abi = (f: string): number => Number(/^vmlinuz-\d+\.\d+\.\d+-(\d+)/.exec(f)?.[1] ?? 0);
  const vmlinuz = readdirSync('/boot')
    .filter((f) => f.startsWith(`vmlinuz-${series}.`) && /-amd64$/.test(f))
    .sort((a, b) => abi(a) - abi(b))
    .at(-1);
  if (vmlinuz === undefined) return undefined;
  const version = vmlinuz.slice('vmlinuz-'.length);
  if (!existsSync(`/lib/modules/${version}`)) return undefined;
  return { version, vmlinuz: `/boot/${vmlinuz}` };
}

function findModule(version: string, name: string): string | undefined {
  const out = execFileSync('find', [`/lib/modules/${version}/kernel`, '-name', `${name}.ko`]).toString().trim().split('\n')[0];
  if (!out && !OPTIONAL_MODULES.has(name)) throw new Error(`module ${name} not found for ${version}`);
  return out || undefined;
}

/** Builds the initramfs (busybox, the 9p modules, /init) once per kernel version. */
function initramfs(kernel: VmKernel): string {
  const initScript = readFileSync(join(here, 'init.sh'));
  const tag = createHash('sha256').update(initScript).digest('hex').slice(0, 12);
  const cache = join(tmpdir(), `switchyard-vm-${kernel.version}-${tag}.cpio.gz`);
  if (existsSync(cache)) return cache;
  const root = mkdtempSync(join(tmpdir(), 'switchyard-initramfs-'));
  try {
    mkdirSync(join(root, 'bin'), { recursive: true });
    mkdirSync(join(root, 'modules'));
    copyFileSync('/bin/busybox', join(root, 'bin/busybox'));
    for (const m of MODULES) {
      const ko = findModule(kernel.version, m);
      if (ko !== undefined) copyFileSync(ko, join(root, 'modules', `${m}.ko`));
    }
    copyFileSync(join(here, 'init.sh'), join(root, 'init'));
    execFileSync('chmod', ['0755', join(root, 'init'), join(root, 'bin/busybox')]);
    const files = execFileSync('find', ['.'], { cwd: root }).toString();
    const cpio = execFileSync('cpio', ['-o', '-H', 'newc', '--quiet'], { cwd: root, input: files, maxBuffer: 64 << 20 });
    writeFileSync(cache, execFileSync('gzip', ['-1'], { input: cpio, maxBuffer: 64 << 20 }));
    return cache;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

export interface VmResult {
  exitCode: number;
  output: string;
  console: string;
}

/** Boots the VM, runs argv (cwd and env as given) inside it, and returns its output. */
export async function runInVm(kernel: VmKernel, argv: string[], options: { cwd: string; env?: Record<string, string>; timeoutMs?: number; memoryMb?: number }): Promise<VmResult> {
  const exchange = mkdtempSync(join(tmpdir(), 'switchyard-vm-x-'));
  try {
    writeFileSync(join(exchange, 'request.json'), JSON.stringify({ argv, cwd: options.cwd, env: options.env ?? {} }));
    // Scratch space in the guest is /run (tmpfs); the host's /tmp is visible but read-only.
    writeFileSync(join(exchange, 'guest.sh'), `#!/bin/sh\nmkdir -p /run/tmp\nexport TMPDIR=/run/tmp\nexec ${process.execPath} ${join(here, 'guest.ts')}\n`);
    const qemu = spawn('qemu-system-x86_64', [
      '-accel', VM_ACCEL, '-cpu', VM_CPU, '-m', String(options.memoryMb ?? 2048), '-smp', '2',
      '-kernel', kernel.vmlinuz, '-initrd', initramfs(kernel),
      '-append', 'console=ttyS0 panic=-1 quiet',
      '-nographic', '-no-reboot',
      '-fsdev', 'local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap', '-device', 'virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot',
      '-fsdev', `local,id=exchange,path=${exchange},security_model=none`, '-device', 'virtio-9p-pci,fsdev=exchange,mount_tag=exchange',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    let consoleText = '';
    qemu.stdout.on('data', (d: Buffer) => (consoleText += d.toString()));
    qemu.stderr.on('data', (d: Buffer) => (consoleText += d.toString()));
    const timer = setTimeout(() => qemu.kill('SIGKILL'), options.timeoutMs ?? 300_000);
    await new Promise<void>((resolve) => qemu.once('exit', () => resolve()));
    clearTimeout(timer);
    const exitPath = join(exchange, 'exit');
    if (!existsSync(exitPath)) return { exitCode: -1, output: '', console: consoleText };
    return { exitCode: Number(readFileSync(exitPath, 'utf8')), output: readFileSync(join(exchange, 'output.log'), 'utf8'), console: consoleText };
  } finally {
    rmSync(exchange, { recursive: true, force: true });
  }
}
