#!/usr/bin/env node
// switchyard: one executable, subcommands. The agent (the default) arrives with the agent work;
// the inspect commands read the model (trace) or the pinned maps.
import { processIO, type CommandIO } from './io.ts';
import { agentCommand } from './agent.ts';
import { probeKernel } from '../backends/probe.ts';
import { inspectCommand } from './inspect.ts';
import { table } from './table.ts';
import { traceCommand } from './trace.ts';

const USAGE = `usage: switchyard [agent] [flags] | switchyard <command> [flags]

commands:
  agent      (the default) watch the sources and program the datapath
  trace      the verdict for one packet, from the desired state (see switchyard trace --help)
  services   frontends the kernel holds, with their backend sets and packet counts
  backends   backends the kernel holds
  conntrack  tracked flows, both directions
             (these three read the pinned maps: --bpffs-dir DIR, --output table|json;
             services also asks the agent what the API wants: --agent URL, default
             http://127.0.0.1:10249, or none)
  cleanup    remove every program, map and pin Switchyard created (same as --cleanup)
  probe      what this kernel can do, per proxy mode (--output json)
  version    print the version
`;

export async function main(argv: string[], io: CommandIO = processIO): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === '--help' || command === '-h') {
      io.stdout(USAGE);
      return 0;
    }
    if (command === undefined || command.startsWith('-')) return await agentCommand(argv, io);
    switch (command) {
      case 'agent':
        return await agentCommand(rest, io);
      case 'trace':
        return await traceCommand(rest, io);
      case 'services':
      case 'backends':
      case 'conntrack':
        return await inspectCommand(command, rest, io);
      case 'probe': {
        const probes = await probeKernel();
        io.stdout(rest.includes('json') ? `${JSON.stringify(probes, null, 2)}\n` : `${table(['MODE', 'USABLE', 'BUILT', 'WHY'], probes.map((p) => [p.mode, p.usable ? 'yes' : 'no', p.built ? 'yes' : 'no', p.reason]))}\n`);
        return 0;
      }
      case 'cleanup':
        return await agentCommand(['--cleanup', ...rest], io);
      case 'version':
        io.stdout('switchyard 0.1.0\n');
        return 0;
      case 'help':
      case '--help':
      case '-h':
        io.stdout(USAGE);
        return 0;
      default:
        io.stderr(`unknown command "${command}"\n${USAGE}`);
        return 2;
    }
  } catch (e) {
    io.stderr(`switchyard ${command}: ${(e as Error).message}\n`);
    return 1;
  }
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2));
