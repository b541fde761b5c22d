// The lab's pod workload: on every port given, a TCP and a UDP server (IPv4 and IPv6) that
// answer with one JSON line naming this pod and the client address and port they saw, so a
// test can tell which backend answered and whether the source was translated.
//   node pod-server.ts --name POD --ports 8080,8081 [--parent PID]
import { createServer, type AddressInfo } from 'node:net';
import { createSocket } from 'node:dgram';
import { parseArgs } from 'node:util';

export interface PodReply {
  pod: string;
  proto: 'tcp' | 'udp';
  client: string;
  clientPort: number;
  server: string;
  port: number;
  /** UDP: the size of the datagram the pod received (an answer to one larger than its JSON is padded to the same size). */
  received?: number;
  /** UDP: the size of the answer as the client received it (set by the probe). */
  replyBytes?: number;
}

/** Dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d; tests compare plain IPv4. */
export function plainAddress(addr: string): string {
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      name: { type: 'string' },
      ports: { type: 'string', default: '8080' },
      parent: { type: 'string' },
      lab: { type: 'string' },
      'bulk-port': { type: 'string' },
    },
  });
  const name = values.name ?? 'unnamed';
  const ports = (values.ports ?? '8080').split(',').map(Number);
  let pending = ports.length * 2;
  const ready = (): void => {
    pending -= 1;
    if (pending === 0) process.stdout.write('ready\n');
  };
  for (const port of ports) {
    const tcp = createServer((socket) => {
      socket.on('error', () => socket.destroy());
      const reply: PodReply = {
        pod: name,
        proto: 'tcp',
        client: plainAddress(socket.remoteAddress ?? ''),
        clientPort: socket.remotePort ?? 0,
        server: plainAddress(socket.localAddress ?? ''),
        port: socket.localPort ?? 0,
      };
      socket.end(`${JSON.stringify(reply)}\n`);
    });
    tcp.listen({ port, host: '::', ipv6Only: false, backlog: 4096 }, ready);
    const udp = createSocket({ type: 'udp6', ipv6Only: false });
    udp.on('message', (msg, rinfo) => {
      const reply: PodReply = {
        pod: name,
        proto: 'udp',
        client: plainAddress(rinfo.address),
        clientPort: rinfo.port,
        server: '',
        port: (udp.address() as AddressInfo).port,
        received: msg.length,
      };
      // A large datagram gets an answer as large (spaces after the JSON line): fragments both ways.
      const line = Buffer.from(`${JSON.stringify(reply)}\n`);
      udp.send(msg.length > line.length ? Buffer.concat([line, Buffer.alloc(msg.length - line.length, 0x20)]) : line, rinfo.port, rinfo.address);
    });
    udp.bind({ port, address: '::' }, ready);
  }
  // Bulk port: the client sends a 4-byte length, the server streams that many bytes and closes.
  if (values['bulk-port'] !== undefined) {
    pending += 1;
    const chunk = Buffer.alloc(1 << 16);
    createServer((socket) => {
      socket.on('error', () => socket.destroy());
      socket.once('data', (req) => {
        let left = req.length >= 4 ? req.readUInt32BE(0) : 0;
        const pump = (): void => {
          while (left > 0) {
            const n = Math.min(left, chunk.length);
            left -= n;
            if (!socket.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void socket.once('drain', pump);
          }
          socket.end();
        };
        pump();
      });
    }).listen({ port: Number(values['bulk-port']), host: '::', ipv6Only: false }, ready);
  }
  // The lab starts servers with --parent; they end with it even if it was SIGKILLed.
  const parent = values.parent === undefined ? undefined : Number(values.parent);
  if (parent !== undefined) {
    setInterval(() => {
      try {
        process.kill(parent, 0);
      } catch {
        process.exit(0);
      }
    }, 500).unref();
    setInterval(() => undefined, 1 << 30);
  }
}

if (import.meta.main) main();
