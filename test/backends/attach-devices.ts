// Child process of ebpf-devices.test.ts, run inside the test's network namespace: opens the eBPF
// backend as the agent does, attaches it twice (the second pass is what a link event causes) and
// prints one JSON line with its log and the devices it attached to.
//   node attach-devices.ts '{"pinDir":"/sys/fs/bpf/x","externalDevices":["eth0"]}'
import { EbpfBackend } from '../../control/backends/ebpf/backend.ts';

const { pinDir, externalDevices } = JSON.parse(process.argv[2] ?? '{}') as { pinDir: string; externalDevices: string[] };
const logs: Array<Record<string, unknown>> = [];
const backend = EbpfBackend.open({ pinDir, podDevicePrefixes: [], externalDevices, xdpMode: 'auto', log: (fields, message) => logs.push({ ...fields, message }) });
try {
  await backend.attach();
  await backend.attach();
  process.stdout.write(`${JSON.stringify({ logs, devices: backend.devices })}\n`);
} finally {
  backend.close();
}
