// The lab's client: connects (TCP) or sends a datagram (UDP) to each target and prints one JSON
// line per attempt with the pod's reply or the error. Run inside a netns by Lab.probe().
//   node probe.ts '{"targets":[{"proto":"tcp","host":"10.96.0.10","port":80}],"count":3}'
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { PodReply } from './pod-server.ts';

export interface ProbeTarget {
  proto: 'tcp' | 'udp';
  host: string;
  port: number;
}

export interface ProbeRequest {
  targets: ProbeTarget[];
  /** Attempts per target. */
  count?: number;
  timeoutMs?: number;
  /** Send every attempt from this one local port (UDP: one flow), not a new port each time. */
  sourcePort?: number;
  /** Attempt i is sent from sourcePorts[i] (a set of known flows). */
  sourcePorts?: number[];
  /** UDP: datagrams of this many bytes (the pod answers with as many); else a few bytes. */
  size?: number;
  /** Join this cgroup (v2) first, as a process of that node would be (socket-level programs). */
  cgroup?: string;
}

export type ProbeResult =
  | { target: ProbeTarget; ok: true; reply: PodReply }
  | { target: ProbeTarget; ok: false; error: string };

function tcpOnce(t: ProbeTarget, timeoutMs: number, sourcePort?: number): Promise<PodReply> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: t.host, port: t.port, localPort: sourcePort });
    let data = '';
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error('ETIMEDOUT')));
    socket.on('data', (chunk) => (data += chunk.toString()));
    socket.on('error', (e: NodeJS.ErrnoException) => reject(new Error(e.code ?? e.message)));
    socket.on('close', () => {
      try {
        resolve(JSON.parse(data) as PodReply);
      } catch {
        reject(new Error(data === '' ? 'EMPTY' : `BADREPLY ${data}`));
      }
    });
  });
}

function udpOnce(t: ProbeTarget, timeoutMs: number, sourcePort?: number, size?: number): Promise<PodReply> {
  return new Promise((resolve, reject) => {
    const socket = createSocket({ type: isIPv6(t.host) ? 'udp6' : 'udp4', reuseAddr: sourcePort !== undefined });
    const timer = setTimeout(() => finish(new Error('ETIMEDOUT')), timeoutMs);
    const finish = (err: Error | null, reply?: PodReply): void => {
      clearTimeout(timer);
      socket.close();
      if (err) reject(err);
      else resolve(reply as PodReply);
    };
    socket.on('error', (e: NodeJS.ErrnoException) => finish(new Error(e.code ?? e.message)));
    socket.on('message', (msg) => {
      try {
        finish(null, { ...(JSON.parse(msg.toString()) as PodReply), replyBytes: msg.length });
      } catch {
        finish(new Error(`BADREPLY ${msg.toString()}`));
      }
    });
    // connect() makes ICMP errors (port unreachable) surface as ECONNREFUSED. A cgroup hook may
    // refuse the connect itself (EPERM, ECONNREFUSED): dgram hands that error to the callback
    // (typed as taking none).
    socket.bind(sourcePort ?? 0, () =>
      socket.connect(t.port, t.host, ((err?: NodeJS.ErrnoException) => (err ? finish(new Error(err.code ?? err.message)) : socket.send(size === undefined ? 'probe' : Buffer.alloc(size, 0x70)))) as () => void),
    );
  });
}

export async function probe(request: ProbeRequest): Promise<ProbeResult[]> {
  const count = request.count ?? 1;
  const timeoutMs = request.timeoutMs ?? 2000;
  const results: ProbeResult[] = [];
  for (const target of request.targets) {
    for (let i = 0; i < count; i++) {
      try {
        const sourcePort = request.sourcePorts?.[i] ?? request.sourcePort;
        const reply = target.proto === 'tcp' ? await tcpOnce(target, timeoutMs, sourcePort) : await udpOnce(target, timeoutMs, sourcePort, request.size);
        results.push({ target, ok: true, reply });
      } catch (e) {
        results.push({ target, ok: false, error: (e as Error).message });
      }
    }
  }
  return results;
}

if (import.meta.main) {
  const request = JSON.parse(process.argv[2] ?? '{}') as ProbeRequest;
  if (request.cgroup !== undefined) writeFileSync(`${request.cgroup}/cgroup.procs`, String(process.pid));
  const results = await probe(request);
  process.stdout.write(`${JSON.stringify(results)}\n`);
}
