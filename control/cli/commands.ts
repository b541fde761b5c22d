// Every command with its flags: the one table --help, the parsers and docs/flags.md read.
import { AGENT_FLAGS, MODEL_FLAGS } from './agent-flags.ts';
import { type FlagSpec, renderFlagHelp, renderFlagTable } from './flags.ts';

export const VERSION = '0.1.0';

export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  flags: readonly FlagSpec[];
}

const sy = (s: Omit<FlagSpec, 'origin'>): FlagSpec => ({ ...s, origin: 'switchyard' });
const agentFlag = (name: string): FlagSpec => {
  const f = AGENT_FLAGS.find((s) => s.name === name);
  if (f === undefined) throw new Error(`no agent flag --${name}`);
  return f;
};
const HELP = agentFlag('help');
const BPFFS = agentFlag('bpffs-dir');
export const OUTPUTS = ['table', 'json', 'yaml'] as const;
const output = (values: readonly string[] = OUTPUTS): FlagSpec => sy({ name: 'output', short: 'o', type: 'enum', values, default: 'table', help: 'Output format.' });
export const CONNTRACK_SORTS = ['idle', 'source', 'destination', 'backend', 'frontend'] as const;

export const COMMANDS: readonly CommandSpec[] = [
  {
    name: 'agent',
    summary: '(the default) watch the sources and program the datapath',
    usage: 'switchyard [agent] [flags]',
    flags: AGENT_FLAGS,
  },
  {
    name: 'trace',
    summary: 'the verdict for one packet on this node, from the desired state',
    usage: 'switchyard trace --src IP --dst IP:PORT [--proto tcp|udp|sctp] (--manifests DIR | --kubeconfig FILE | --master URL) [flags]',
    flags: [
      sy({ name: 'src', type: 'string', placeholder: 'ip', help: 'The packet\'s source address (required).' }),
      sy({ name: 'dst', type: 'string', placeholder: 'ip:port', help: 'The packet\'s destination, IP:PORT or [IPv6]:PORT (required).' }),
      sy({ name: 'proto', type: 'enum', values: ['tcp', 'udp', 'sctp'], default: 'tcp', help: 'The packet\'s protocol.' }),
      sy({ name: 'from-interface', type: 'string', help: 'The interface the packet arrives on (for BridgeInterface / InterfaceNamePrefix local detection).' }),
      sy({ name: 'node-ip', type: 'strings', help: "This node's addresses (NodePorts listen on them); default: none besides the Node object's." }),
      { ...agentFlag('proxy-mode'), values: ['ebpf', 'nftables', 'iptables', 'ipvs'], help: "Give that mode's answer where kube-proxy's modes differ." },
      agentFlag('manifests'),
      agentFlag('kubeconfig'),
      agentFlag('master'),
      agentFlag('kube-api-content-type'),
      agentFlag('hostname-override'),
      ...MODEL_FLAGS,
      output(['table', 'json']),
      HELP,
    ],
  },
  {
    name: 'services',
    summary: 'frontends the kernel holds, with their backends and packet counts, beside what the API wants',
    usage: 'switchyard services [flags]',
    flags: [BPFFS, output(), sy({ name: 'agent', type: 'string', default: 'http://127.0.0.1:10249', help: "The agent's metrics address, asked for the API's view; none: do not ask." }), HELP],
  },
  { name: 'backends', summary: 'backends the kernel holds', usage: 'switchyard backends [flags]', flags: [BPFFS, output(), HELP] },
  { name: 'drops', summary: 'packets the datapath dropped, by reason', usage: 'switchyard drops [flags]', flags: [BPFFS, output(), HELP] },
  {
    name: 'conntrack',
    summary: 'tracked flows, one row per flow with both directions',
    usage: 'switchyard conntrack [flags]',
    flags: [
      BPFFS,
      output(),
      sy({ name: 'service', type: 'string', placeholder: 'ip[:port]', help: 'Only flows through this frontend (service address, optionally with its port).' }),
      sy({ name: 'backend', type: 'string', placeholder: 'ip[:port]', help: 'Only flows to this backend.' }),
      sy({ name: 'proto', type: 'enum', values: ['tcp', 'udp', 'sctp'], help: 'Only flows of this protocol.' }),
      sy({ name: 'sort', type: 'enum', values: CONNTRACK_SORTS, default: 'idle', help: 'Order of the rows (idle: most recently seen first; addresses sort numerically).' }),
      sy({ name: 'limit', type: 'int', default: '0', help: 'At most this many rows (0: all).' }),
      HELP,
    ],
  },
  { name: 'cleanup', summary: 'remove every program, map, pin and rule Switchyard made (same as --cleanup)', usage: 'switchyard cleanup [flags]', flags: [agentFlag('config'), BPFFS, agentFlag('cgroup-root'), HELP] },
  { name: 'probe', summary: 'what this kernel can do, per proxy mode', usage: 'switchyard probe [flags]', flags: [output(['table', 'json']), HELP] },
  { name: 'version', summary: 'print the version', usage: 'switchyard version', flags: [HELP] },
];

export function command(name: string): CommandSpec {
  const c = COMMANDS.find((x) => x.name === name);
  if (c === undefined) throw new Error(`no command ${name}`);
  return c;
}

export const USAGE_LINE = 'usage: switchyard [agent] [flags] | switchyard <command> [flags]   (switchyard --help for more)';

export function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return `usage: switchyard [agent] [flags] | switchyard <command> [flags]

commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

"switchyard <command> --help" lists a command's flags; "switchyard --help" alone lists the agent's.
`;
}

export function commandHelp(c: CommandSpec): string {
  const head = c.name === 'agent' ? `${mainHelp()}\nagent flags (kube-proxy's, then Switchyard's):\n` : `usage: ${c.usage}\n\n${c.summary}\n\nflags:\n`;
  return `${head}${renderFlagHelp(c.flags)}\n`;
}

/** docs/flags.md: generated from COMMANDS (`npm run docs:flags`); a test checks it is current. */
export function flagsDoc(): string {
  const parts = [
    '# Switchyard flags',
    '',
    '<!-- Generated from control/cli/commands.ts and control/cli/agent-flags.ts by `npm run docs:flags`; do not edit. -->',
    '',
    "The agent takes kube-proxy's whole flag set (v1.33: `cmd/kube-proxy/app/options.go` and component-base's logging flags), parsed as kube-proxy parses them (pflag: `--flag=value`, `--flag value`, a bare `--bool` or `--bool=true|false`, lists repeated or comma-separated). A flag Switchyard accepts but does not use is named, with the reason, in one warning at start. Flags given with `--config` override the file.",
    '',
  ];
  for (const c of COMMANDS) {
    parts.push(`## ${c.name}`, '', `\`${c.usage}\` — ${c.summary}.`, '', renderFlagTable(c.flags), '');
  }
  return parts.join('\n');
}
