// Long-lived flows for tests that change the datapath under them (takeover from a rule mode).
//   node session.ts server --name POD --port P
//     TCP: answers every line with one JSON line {pod, seq}, keeping the connection open;
//     UDP: answers every datagram the same way. Prints "ready".
//   node session.ts client '{"proto":"tcp","host":"10.96.0.60","port":9100,"intervalMs":50}'
//     One connection (TCP) or one socket (UDP) that sends a request every intervalMs; prints one
//     JSON line per answer ({seq, pod}) and per error ({error}); when stdin closes it prints a
//     summary {sent, answered, pods, errors} and exits. A TCP connection that breaks (reset,
//     closed) is an error; UDP requests never answered are counted (sent - answered).
import { connect, createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';

interface ClientRequest {
  proto: 'tcp' | 'udp';
  host: string;
  port: number;
  intervalMs: number;
}

function server(name: string, port: number): void {
  let pending = 2;
  const ready = (): void => {
    if (--pending === 0) process.stdout.write('ready\n');
  };
  createServer((socket) => {
    socket.on('error', () => socket.destroy());
    createInterface({ input: socket }).on('line', (seq) => socket.write(`${JSON.stringify({ pod: name, seq })}\n`));
  }).listen({ port, host: '::', ipv6Only: false }, ready);
  const udp = createSocket({ type: 'udp6', ipv6Only: false });
  udp.on('message', (msg, rinfo) => udp.send(`${JSON.stringify({ pod: name, seq: msg.toString().trim() })}\n`, rinfo.port, rinfo.address));
  udp.bind({ port, address: '::' }, ready);
}

function client(req: ClientRequest): void {
  let sent = 0;
  const answered = new Set<string>();
  const pods = new Set<string>();
  const errors: string[] = [];
  const onAnswer = (line: string): void => {
    const a = JSON.parse(line) as { pod: string; seq: string };
    answered.add(a.seq);
    pods.add(a.pod);
    process.stdout.write(`${JSON.stringify({ seq: Number(a.seq), pod: a.pod })}\n`);
  };
  const onError = (error: string): void => {
    errors.push(error);
    process.stdout.write(`${JSON.stringify({ error })}\n`);
  };
  let closing = false;
  let send: (seq: number) => void;
  let close: () => void;
  if (req.proto === 'tcp') {
    const socket = connect({ host: req.host, port: req.port });
    createInterface({ input: socket }).on('line', onAnswer);
    socket.on('error', (e) => onError(e.message));
    socket.on('close', () => {
      if (!closing) onError('connection closed');
    });
    send = (seq) => socket.write(`${seq}\n`);
    close = () => socket.destroy();
  } else {
    const socket = createSocket(req.host.includes(':') ? 'udp6' : 'udp4');
    socket.on('message', (msg) => onAnswer(msg.toString().trim()));
    socket.on('error', (e) => onError(e.message));
    socket.connect(req.port, req.host);
    send = (seq) => {
      try {
        socket.send(`${seq}\n`);
      } catch (e) {
        onError((e as Error).message);
      }
    };
    close = () => socket.close();
  }
  const timer = setInterval(() => send(++sent), req.intervalMs);
  process.stdin.resume();
  process.stdin.on('end', () => {
    closing = true;
    clearInterval(timer);
    process.stdout.write(`${JSON.stringify({ summary: { sent, answered: answered.size, pods: [...pods], errors } })}\n`);
    close();
    setTimeout(() => process.exit(0), 50);
  });
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'server') {
  const arg = (flag: string): string => rest[rest.indexOf(flag) + 1]!;
  server(arg('--name'), Number(arg('--port')));
} else if (mode === 'client') {
  client(JSON.parse(rest[0]!) as ClientRequest);
} else {
  process.stderr.write('usage: session.ts server --name POD --port P | client JSON\n');
  process.exit(2);
}
