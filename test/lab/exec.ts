// Running system tools for the lab: argument vectors only (never a shell line), input on stdin.
import { execFile, execFileSync } from 'node:child_process';

export class CommandError extends Error {
  readonly command: string[];
  readonly stderr: string;
  readonly exitCode: number | null;

  constructor(command: string[], exitCode: number | null, stderr: string) {
    super(`${command.join(' ')} failed (${exitCode}): ${stderr.trim()}`);
    this.name = 'CommandError';
    this.command = command;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

/** Runs `file args...`, feeding `input` on stdin; resolves with stdout. */
export function run(file: string, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) {
        const code = typeof error.code === 'number' ? error.code : null;
        reject(new CommandError([file, ...args], code, String(stderr) || error.message));
      } else {
        resolve(String(stdout));
      }
    });
    // A tool that exits without reading its input must not take the caller down with EPIPE.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input);
  });
}

/** The synchronous twin, for exit handlers where nothing asynchronous runs any more. */
export function runSync(file: string, args: readonly string[], input?: string): string {
  try {
    return execFileSync(file, args, { input: input ?? '', stdio: ['pipe', 'pipe', 'pipe'] }).toString();
  } catch (e) {
    const err = e as { status?: number | null; stderr?: Buffer };
    throw new CommandError([file, ...args], err.status ?? null, err.stderr?.toString() ?? String(e));
  }
}

/** Runs `ip -n NS -batch -` with one command per line. */
export function ipBatch(netns: string, lines: readonly string[]): Promise<string> {
  return run('ip', ['-n', netns, '-batch', '-'], `${lines.join('\n')}\n`);
}
