// A process on a lab node holding sockets open for socket-level load balancing tests, driven by
// one JSON command per stdin line, answering one JSON event per stdout line:
//   node sock-client.ts CGROUP        (joins the cgroup first, as a process of that node)
// SockClient below runs it for a test.
// Commands, each with an id naming its socket:
//   {"op":"tcp","id":"a","host":"10.96.0.1","port":80}   connect and hold (event "connected")
//   {"op":"send","id":"a","data":"00000001"}             write hex bytes (TCP) (events "data")
//   {"op":"udp","id":"b","host":"..","port":53}          connected UDP socket, one datagram (event "reply")
//   {"op":"again","id":"b"}                              one more datagram on it (event "reply")
//   {"op":"udpu","id":"c","host":"..","port":53,"count":50}  unconnected: count datagrams in turn (event "replies")
//   {"op":"peer","id":"a"}                               getpeername (event "peer")
//   {"op":"close","id":"a"}
// Errors of a socket at any time: event "error" with its code. IPv6 hosts (::ffff:a.b.c.d too)
// use AF_INET6 sockets.
import { writeFileSync } from 'node:fs';
import { connect, isIPv6, type Socket } from 'node:net';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createInterface } from 'node:readline';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { until } from '../wait.ts';

interface Command {
  op: 'tcp' | 'send' | 'udp' | 'again' | 'udpu' | 'peer' | 'close';
  id: string;
  host?: string;
  port?: number;
  count?: number;
  data?: string;
}

const tcp = new Map<string, Socket>();
const udp = new Map<string, UdpSocket>();

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

function udpSocket(c: Command): UdpSocket {
  const s = createSocket({ type: isIPv6(c.host!) ? 'udp6' : 'udp4' });
  s.on('error', (e: NodeJS.ErrnoException) => emit({ id: c.id, event: 'error', code: e.code ?? e.message }));
  udp.set(c.id, s);
  return s;
}

function pod(msg: Buffer): string {
  return (JSON.parse(msg.toString()) as { pod: string }).pod;
}

function handle(c: Command): void {
  switch (c.op) {
    case 'tcp': {
      const s = connect({ host: c.host!, port: c.port!, allowHalfOpen: true });
      tcp.set(c.id, s);
      s.on('connect', () => emit({ id: c.id, event: 'connected', peer: s.remoteAddress, family: s.remoteFamily }));
      s.on('data', (d) => emit({ id: c.id, event: 'data', bytes: d.length }));
      s.on('error', (e: NodeJS.ErrnoException) => emit({ id: c.id, event: 'error', code: e.code ?? e.message }));
      s.on('close', () => emit({ id: c.id, event: 'closed' }));
      return;
    }
    case 'send':
      tcp.get(c.id)?.write(Buffer.from(c.data ?? '', 'hex'));
      return;
    case 'udp': {
      const s = udpSocket(c);
      s.on('message', (msg, rinfo) => emit({ id: c.id, event: 'reply', pod: pod(msg), from: rinfo.address }));
      s.connect(c.port!, c.host!, () => {
        emit({ id: c.id, event: 'connected', peer: s.remoteAddress().address });
        s.send('probe');
      });
      return;
    }
    case 'again':
      udp.get(c.id)?.send('probe');
      return;
    case 'udpu': {
      const s = udp.get(c.id) ?? udpSocket(c);
      const pods: string[] = [];
      const from = new Set<string>();
      const next = (): void => {
        if (pods.length === (c.count ?? 1)) {
          s.removeListener('message', onMessage);
          emit({ id: c.id, event: 'replies', pods, from: [...from] });
          return;
        }
        s.send('probe', c.port!, c.host!);
      };
      const onMessage = (msg: Buffer, rinfo: { address: string }): void => {
        pods.push(pod(msg));
        from.add(rinfo.address);
        next();
      };
      s.on('message', onMessage);
      next();
      return;
    }
    case 'peer': {
      const t = tcp.get(c.id);
      emit({ id: c.id, event: 'peer', peer: t !== undefined ? t.remoteAddress : udp.get(c.id)?.remoteAddress().address });
      return;
    }
    case 'close':
      tcp.get(c.id)?.destroy();
      udp.get(c.id)?.close();
      tcp.delete(c.id);
      udp.delete(c.id);
      return;
  }
}

/** Drives this program in a lab node's namespace and cgroup from a test, keeping every event it printed. */
export class SockClient {
  readonly events: Event[] = [];
  private readonly child: ChildProcessWithoutNullStreams;

  constructor(netnsPath: string, cgroup: string) {
    this.child = spawn('nsenter', [`--net=${netnsPath}`, '--', process.execPath, fileURLToPath(import.meta.url), cgroup]);
    createInterface({ input: this.child.stdout }).on('line', (line) => this.events.push(JSON.parse(line) as Event));
    this.child.stderr.on('data', (d) => process.stderr.write(d));
  }

  send(command: Record<string, unknown>): void {
    this.child.stdin.write(`${JSON.stringify(command)}\n`);
  }

  /** Resolves once the program is listening to commands. */
  ready(): Promise<void> {
    return until('the socket client', () => this.events.some((e) => e.event === 'ready'));
  }

  /** Sends a command and resolves with the first new event of its id named `event` (fails on an error first). */
  async ask(command: Record<string, unknown>, event: string): Promise<Event> {
    const seen = this.events.length;
    const mine = (e: Event): boolean => e.id === command.id && (e.event === event || e.event === 'error');
    this.send(command);
    await until(`${event} of ${String(command.id)}`, () => this.events.slice(seen).some(mine));
    const e = this.events.slice(seen).find(mine)!;
    if (e.event !== event) throw new Error(`${String(command.id)}: ${JSON.stringify(e)}`);
    return e;
  }

  errors(): Event[] {
    return this.events.filter((e) => e.event === 'error');
  }

  stop(): void {
    this.child.stdin.end();
    this.child.kill();
  }
}

export type Event = Record<string, unknown> & { id?: string; event: string };

if (import.meta.main) {
  const cgroup = process.argv[2];
  if (cgroup !== undefined && cgroup !== '') writeFileSync(`${cgroup}/cgroup.procs`, String(process.pid));
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    try {
      handle(JSON.parse(line) as Command);
    } catch (e) {
      emit({ event: 'fault', message: (e as Error).message });
    }
  });
  lines.on('close', () => process.exit(0));
  emit({ event: 'ready' });
}
