// Protobuf vs JSON: bytes on the wire and decode throughput for EndpointSlice watch events,
// with JSON (what client-node's informer would read) as the baseline measured in the same run.
//   npm run bench:decode
import { encodeObject, encodeWatchFrame } from '../test/apiserver/encode.ts';
import { slice } from '../test/cases/objects.ts';
import { FrameSplitter, LineSplitter, decodeJsonWatchEvent, decodeProtoWatchEvent } from '../control/sources/kube/wire.ts';
import { opsPerSecond, writeReport } from './report.ts';

const rows: Array<Record<string, number | string>> = [];
for (const endpoints of [1, 10, 100]) {
  const s = slice({
    ns: 'production',
    name: `checkout-api-${endpoints}-x7k2q`,
    service: 'checkout-api',
    ports: [{ name: 'http', port: 8080 }, { name: 'grpc', port: 9090 }],
    endpoints: Array.from({ length: endpoints }, (_, i) => ({ ip: `10.${(i >> 8) & 255}.${i & 255}.7`, node: `node-${i % 50}`, zone: `zone-${i % 3}`, zoneHints: [`zone-${i % 3}`] })),
  });
  const obj = { ...s, metadata: { ...s.metadata, resourceVersion: '123456789', uid: '6f1c2b7e-9a34-4d2e-8a51-3c1b9e0d4f21' } };
  const proto = encodeWatchFrame('MODIFIED', encodeObject('EndpointSlice', obj));
  const json = Buffer.from(`${JSON.stringify({ type: 'MODIFIED', object: obj })}\n`);
  // Five rounds, alternating, so a neighbour's load falls on both; the median of each is kept.
  const protoRuns: number[] = [];
  const jsonRuns: number[] = [];
  for (let round = 0; round < 5; round++) {
    protoRuns.push(opsPerSecond(() => {
      for (const f of new FrameSplitter().push(proto)) decodeProtoWatchEvent('EndpointSlice', f);
    }, 400));
    jsonRuns.push(opsPerSecond(() => {
      for (const l of new LineSplitter().push(json)) decodeJsonWatchEvent('EndpointSlice', l);
    }, 400));
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  const protoOps = median(protoRuns);
  const jsonOps = median(jsonRuns);
  rows.push({
    endpoints,
    protobufBytes: proto.length,
    jsonBytes: json.length,
    bytesRatio: +(proto.length / json.length).toFixed(3),
    protobufEventsPerSec: Math.round(protoOps),
    jsonEventsPerSec: Math.round(jsonOps),
    speedRatio: +(protoOps / jsonOps).toFixed(3),
  });
}
console.table(rows);
console.log(`written ${writeReport('decode', { unit: 'EndpointSlice MODIFIED watch event', baseline: 'JSON', rows })}`);
