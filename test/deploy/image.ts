// Switchyard's OCI image for tests: built by `npm run image` when missing or older than what goes
// into it, unpacked once per run with umoci, and run with runc as the DaemonSet's pod.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { daemonSet, hostPathsToCreate, podRuntimeConfig, type PodStandIns } from './pod-spec.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const LAYOUT = `${ROOT}build/image/oci`;
export const IMAGE_TAG = `switchyard:${(JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { version: string }).version}`;
/** What goes into the image: a change to any of these makes the built image stale. */
const INPUTS = ['control', 'proto', 'tsconfig.json', 'tsconfig.build.json', 'build/Release/switchyard.node', 'build/bpf', 'package-lock.json', 'deploy/image'];

/** A tool run with argv and a timeout; rejects with its stderr. */
function run(file: string, args: string[], options: { cwd?: string; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd: options.cwd, timeout: options.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')}: ${String(stderr).trim() || error.message}`));
      else resolve(String(stdout));
    });
  });
}

function newestMtime(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = st.mtimeMs;
  for (const entry of readdirSync(path)) newest = Math.max(newest, newestMtime(`${path}/${entry}`));
  return newest;
}

/** Builds the image unless an up-to-date one is there; returns the build's seconds (0: reused). */
export async function ensureImage(): Promise<number> {
  const index = `${LAYOUT}/index.json`;
  const inputs = Math.max(...INPUTS.map((p) => newestMtime(`${ROOT}${p}`)));
  if (existsSync(index) && statSync(index).mtimeMs > inputs) return 0;
  const t0 = performance.now();
  await run('npm', ['run', '--silent', 'image'], { cwd: ROOT, timeoutMs: 20 * 60_000 });
  return (performance.now() - t0) / 1000;
}

export interface Bundle {
  dir: string;
  /** The image's process settings, from umoci's generated config.json. */
  image: { args: string[]; env: string[]; cwd: string };
  remove(): void;
}

/** Unpacks the image into a runtime bundle (rootfs + config.json). */
export async function unpack(dir: string): Promise<Bundle> {
  rmSync(dir, { recursive: true, force: true });
  await run('umoci', ['unpack', '--image', `${LAYOUT}:${IMAGE_TAG}`, dir], { timeoutMs: 5 * 60_000 });
  const generated = JSON.parse(readFileSync(`${dir}/config.json`, 'utf8')) as { process: { args: string[]; env: string[]; cwd: string } };
  const remove = (): void => rmSync(dir, { recursive: true, force: true });
  process.once('exit', remove);
  return { dir, image: generated.process, remove };
}

export interface Container {
  id: string;
  child: ChildProcess;
  /** Every output line, JSON-parsed where it is JSON (the agent's log lines). */
  logs: Array<Record<string, unknown>>;
  stderr: string[];
  exited: Promise<number | null>;
  /** Resolves with the first log line `match` accepts; rejects if the container exits first. */
  waitFor(match: (l: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>>;
  /** Kills the container, then `runc delete --force`. */
  remove(): Promise<void>;
}

/** Runs the bundle with runc as the DaemonSet's pod, per `standIns`. */
export function runPod(bundle: Bundle, id: string, standIns: PodStandIns): Container {
  // One bundle per container (its config.json), all sharing the unpacked rootfs.
  const dir = `${bundle.dir}/${id}`;
  mkdirSync(dir, { recursive: true });
  // The agent logs klog text on stderr by default; the test reads its JSON lines.
  const args = standIns.command !== undefined ? standIns : { ...standIns, extraArgs: ['--logging-format=json', ...(standIns.extraArgs ?? [])] };
  const ds = daemonSet();
  for (const h of hostPathsToCreate(ds, standIns)) {
    if (h.kind === 'directory') mkdirSync(h.path, { recursive: true });
    else if (!existsSync(h.path)) writeFileSync(h.path, '', { flag: 'a' });
  }
  const config = podRuntimeConfig(ds, bundle.image, args);
  config.root.path = `${bundle.dir}/rootfs`;
  writeFileSync(`${dir}/config.json`, JSON.stringify(config, null, 2));
  const child = spawn('runc', ['run', '--bundle', dir, id], { stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: Array<Record<string, unknown>> = [];
  const stderr: string[] = [];
  const waiters = new Set<{ match: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }>();
  const record = (line: string): void => {
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      entry = { msg: line };
    }
    logs.push(entry);
    for (const w of waiters) if (w.match(entry)) (waiters.delete(w), w.resolve(entry));
  };
  createInterface({ input: child.stdout! }).on('line', record);
  // The agent's log lines (JSON with --logging-format=json) are on stderr.
  createInterface({ input: child.stderr! }).on('line', (line) => {
    stderr.push(line);
    if (line.startsWith('{')) record(line);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    id,
    child,
    logs,
    stderr,
    exited,
    waitFor: (match, what) => {
      const seen = logs.find(match);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        waiters.add({ match, resolve });
        void exited.then((code) => reject(new Error(`container ${id} exited (${code}) before ${what}; stderr: ${stderr.join('\n')}; last logs: ${JSON.stringify(logs.slice(-5))}`)));
      });
    },
    remove: async () => {
      // runc cannot forward SIGKILL: the container's process is killed through runc.
      await run('runc', ['kill', id, 'KILL']).catch(() => undefined);
      if (child.exitCode === null && child.signalCode === null) {
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      await run('runc', ['delete', '--force', id]).catch(() => undefined);
    },
  };
}
