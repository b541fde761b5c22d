// Running the real agent executable inside a lab node, as a DaemonSet pod would run on a node.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { rmSync, writeFileSync } from 'node:fs';
import { writeManifests } from '../cases/manifests.ts';
import { Lab, netnsPath, type LabNode } from '../lab/lab.ts';

const MAIN = fileURLToPath(new URL('../../control/cli/main.ts', import.meta.url));

export interface RunningAgent {
  child: ChildProcess;
  /** Every log line so far, parsed. */
  logs: Array<Record<string, unknown>>;
  /** Resolves with the first "synced" log line. */
  synced: Promise<Record<string, unknown>>;
}

export function startAgent(lab: Lab, node: LabNode, manifests: string, extra: string[] = []): RunningAgent {
  const cgroup = lab.cgroup(node);
  const child = spawn(
    'nsenter',
    [
      `--net=${netnsPath(node.netns)}`, '--', process.execPath, MAIN,
      '--manifests', manifests, '--hostname-override', node.name, '--bpffs-dir', lab.bpffsDir(`agent-${node.name}`),
      '--cgroup-root', cgroup, '--external-devices', node.wireIf,
      '--cluster-cidr', '10.244.0.0/16,fd00:10:244::/48', '--nodeport-addresses', '10.254.0.0/24,fd00:254::/64', '--logging-format=json', ...extra,
    ],
    // The agent logs to stderr, as kube-proxy; JSON lines are read, anything else passed on.
    { stdio: ['ignore', 'inherit', 'pipe'] },
  );
  // In the node's cgroup, the agent is swept with the lab even if this process is killed.
  writeFileSync(`${cgroup}/cgroup.procs`, String(child.pid));
  const logs: Array<Record<string, unknown>> = [];
  // What the agent printed that is not a log line (a V8 fatal error, a native abort), kept for the
  // error below: the test's own output may be cut where a VM's console is.
  const other: string[] = [];
  const synced = new Promise<Record<string, unknown>>((resolve, reject) => {
    createInterface({ input: child.stderr! }).on('line', (line) => {
      if (!line.startsWith('{')) {
        process.stderr.write(`${line}\n`);
        other.push(line);
        if (other.length > 40) other.shift();
        return;
      }
      const entry = JSON.parse(line) as Record<string, unknown>;
      logs.push(entry);
      if (entry.msg === 'synced') resolve(entry);
    });
    child.once('exit', (code, signal) => {
      const fail = (): void => reject(new Error(`agent exited (${code ?? signal}) before its first sync; its last logs: ${JSON.stringify(logs.slice(-5))}; other output: ${other.join('\n')}`));
      // Its last lines are read once its stderr closes; a tool child holding it open does not hold the failure.
      const late = setTimeout(fail, 2_000);
      child.once('close', () => {
        clearTimeout(late);
        fail();
      });
    });
  });
  synced.catch(() => undefined);
  return { child, logs, synced };
}

/** Health and metrics on kube-proxy's ports: each lab node has its own netns, so they never clash. */
export const SERVING_ARGS = ['--healthz-bind-address', '127.0.0.1:10256', '--metrics-bind-address', '127.0.0.1:10249'];

export interface AgentLab {
  lab: Lab;
  manifests: string;
  /** The running agent; a test that restarts it stores the new one here, so stop() kills it. */
  agent: RunningAgent;
  /** Kills the agent, tears the lab down and removes the manifests. */
  stop(): Promise<void>;
}

/** A 2x3 lab, the semantic cluster's manifests on disk, and the agent on n0 past its first sync. */
export async function agentLab(extra: string[] = []): Promise<AgentLab> {
  const lab = await Lab.create({ nodes: 2, podsPerNode: 3 });
  const manifests = writeManifests();
  const agent = startAgent(lab, lab.nodes[0]!, manifests, [...SERVING_ARGS, ...extra]);
  const env: AgentLab = {
    lab,
    manifests,
    agent,
    // The agent of the moment: a test that restarts it puts the new one here.
    stop: async () => {
      env.agent.child.kill('SIGKILL');
      await lab.teardown();
      rmSync(manifests, { recursive: true, force: true });
    },
  };
  try {
    await agent.synced;
  } catch (e) {
    await env.stop();
    throw e;
  }
  return env;
}
