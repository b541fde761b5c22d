// Load from inside a netns for benchmarks: sequential connections (connect, read the reply,
// close) for a while, or one bulk download; prints one JSON line.
//   node load.ts '{"mode":"connections","host":"10.96.0.10","port":80,"seconds":3}'   (or "count":30000)
//   node load.ts '{"mode":"bulk","host":"10.96.0.10","port":5001,"bytes":1073741824}'
// A bulk download gives up after idleMs without data (default: never) and reports what it got.
import { existsSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';

interface LoadRequest {
  mode: 'connections' | 'bulk';
  host: string;
  port: number;
  seconds?: number;
  /** connections: stop after this many instead of after `seconds`. */
  count?: number;
  /** connections: stop once this file exists (instead of after `seconds`). */
  stopFile?: string;
  /** connections: the count so far is written here after every 20 connections (tests wait on it). */
  progressFile?: string;
  bytes?: number;
  /** bulk: give up after this long without data (a stalled path) and report the bytes so far. */
  idleMs?: number;
}

function once(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port });
    s.on('data', () => undefined);
    s.on('error', reject);
    s.on('close', () => resolve());
  });
}

function bulk(host: string, port: number, bytes: number, idleMs?: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let got = 0;
    const s = connect({ host, port }, () => {
      const req = Buffer.alloc(4);
      req.writeUInt32BE(bytes);
      s.write(req);
    });
    if (idleMs !== undefined) s.setTimeout(idleMs, () => s.destroy());
    s.on('data', (d) => (got += d.length));
    s.on('error', reject);
    s.on('close', () => resolve(got));
  });
}

const req = JSON.parse(process.argv[2] ?? '{}') as LoadRequest;
if (req.mode === 'connections') {
  const until = Date.now() + (req.seconds ?? 3) * 1000;
  let n = 0;
  let failures = 0;
  const errors: string[] = [];
  const start = process.hrtime.bigint();
  const more = (): boolean => (req.count !== undefined ? n + failures < req.count : req.stopFile !== undefined ? !existsSync(req.stopFile) : Date.now() < until);
  while (more()) {
    try {
      await once(req.host, req.port);
      n++;
      if (req.progressFile !== undefined && n % 20 === 0) writeFileSync(req.progressFile, String(n));
    } catch (e) {
      failures++;
      if (errors.length < 5) errors.push((e as Error).message);
    }
  }
  const s = Number(process.hrtime.bigint() - start) / 1e9;
  process.stdout.write(`${JSON.stringify({ connections: n, failures, errors, perSecond: n / s })}\n`);
} else {
  const start = process.hrtime.bigint();
  const got = await bulk(req.host, req.port, req.bytes ?? 1 << 30, req.idleMs);
  const s = Number(process.hrtime.bigint() - start) / 1e9;
  process.stdout.write(`${JSON.stringify({ bytes: got, gbitPerSecond: (got * 8) / s / 1e9 })}\n`);
}
