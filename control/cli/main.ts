#!/usr/bin/env node
// switchyard: one executable, subcommands; the agent is the default. Flags, --help and
// docs/flags.md come from one table (commands.ts). An error is one line, "switchyard: ..." (or
// "switchyard <command>: ..."), and an exit code: 2 for a usage error, 1 for anything else.
import { processIO, type CommandIO } from './io.ts';
import { agentCommand, cleanupCommand } from './agent.ts';
import { probeKernel } from '../backends/probe.ts';
import { COMMANDS, command, commandHelp, mainHelp, USAGE_LINE, VERSION } from './commands.ts';
import { FlagError, parseFlags } from './flags.ts';
import { NoSourceError } from './preflight.ts';
import { inspectCommand } from './inspect.ts';
import { table } from './table.ts';
import { traceCommand } from './trace.ts';

async function probeCommand(argv: string[], io: CommandIO): Promise<number> {
  const spec = command('probe');
  const { values, args } = parseFlags(argv, spec.flags);
  if (values.get('help') === true) {
    io.stdout(commandHelp(spec));
    return 0;
  }
  if (args.length > 0) throw new FlagError(`unexpected argument "${args[0]}" (-o json for JSON)`);
  const probes = await probeKernel();
  io.stdout(values.get('output') === 'json' ? `${JSON.stringify(probes, null, 2)}\n` : `${table(['MODE', 'USABLE', 'BUILT', 'WHY'], probes.map((p) => [p.mode, p.usable ? 'yes' : 'no', p.built ? 'yes' : 'no', p.reason]))}\n`);
  return 0;
}

function versionCommand(argv: string[], io: CommandIO): number {
  const { values, args } = parseFlags(argv, command('version').flags);
  if (args.length > 0) throw new FlagError(`unexpected argument "${args[0]}"`);
  io.stdout(values.get('help') === true ? commandHelp(command('version')) : `switchyard ${VERSION}\n`);
  return 0;
}

export async function main(argv: string[], io: CommandIO = processIO): Promise<number> {
  const [first, ...rest] = argv;
  const isCommand = first !== undefined && COMMANDS.some((c) => c.name === first);
  const name = isCommand ? first : 'agent';
  const args = isCommand ? rest : argv;
  // Errors name the command only when one was given: never a flag mistaken for one.
  const prefix = isCommand && name !== 'agent' ? `switchyard ${name}` : 'switchyard';
  try {
    if (first === 'help') {
      io.stdout(mainHelp());
      return 0;
    }
    if (first !== undefined && !isCommand && !first.startsWith('-')) {
      io.stderr(`${prefix}: unknown command "${first}"\n${USAGE_LINE}\n`);
      return 2;
    }
    switch (name) {
      case 'trace':
        return await traceCommand(args, io);
      case 'services':
      case 'backends':
      case 'conntrack':
      case 'drops':
        return await inspectCommand(name, args, io);
      case 'probe':
        return await probeCommand(args, io);
      case 'cleanup':
        return await cleanupCommand(args, io);
      case 'version':
        return versionCommand(args, io);
      default:
        return await agentCommand(args, io);
    }
  } catch (e) {
    if (e instanceof FlagError || e instanceof NoSourceError) {
      io.stderr(`${prefix}: ${e.message}\n${name === 'agent' ? USAGE_LINE : `usage: ${command(name).usage}   (--help for the flags)`}\n`);
      return 2;
    }
    io.stderr(`${prefix}: ${(e as Error).message}\n`);
    return 1;
  }
}

// process.exit: nothing the agent started (timers, sockets, children) may keep a stopped agent
// alive; every child it spawned is killed by its own exit handler.
if (import.meta.main) process.exit(await main(process.argv.slice(2)));
