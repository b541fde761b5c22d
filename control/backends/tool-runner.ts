// Running a system tool (nft, ipvsadm, ipset, ip) with arguments as an argv array and its input
// on stdin, never through a shell. `prefix` is prepended to every command (the lab runs the tools
// inside a node's netns through nsenter); empty in production.
import { execFile } from 'node:child_process';

export type ToolRunner = (file: string, args: string[], input?: string) => Promise<{ ok: boolean; out: string }>;

/** ok with stdout, or not ok with stderr (or the spawn error's message). */
export function toolRunner(prefix: readonly string[] = []): ToolRunner {
  return (file, args, input) =>
    new Promise((resolve) => {
      const argv = [...prefix, file, ...args];
      const child = execFile(argv[0]!, argv.slice(1), { maxBuffer: 1 << 30 }, (error, stdout, stderr) => resolve({ ok: error === null, out: error ? String(stderr || error.message) : String(stdout) }));
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(input);
    });
}
