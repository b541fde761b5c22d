// Command-line flags with pflag's semantics (kube-proxy is a cobra/pflag program): --flag=value,
// --flag value, -v 2 / -v=2 / -v2, a bare --bool (true) or --bool=true|false, lists that take
// repeats and commas, key=bool maps, deprecated flags accepted with a warning, `--` ending the
// flags. One FlagSpec table per command drives the parser, --help and docs/flags.md. Pure.

export type FlagType = 'bool' | 'string' | 'int' | 'float' | 'duration' | 'enum' | 'strings' | 'mapStringBool';
export type FlagValue = boolean | string | number | string[] | Record<string, boolean>;

export interface FlagSpec {
  name: string;
  short?: string;
  type: FlagType;
  /** The valid values of an enum flag. */
  values?: readonly string[];
  /** What --help shows as the default ("" for none). */
  default?: string;
  /** Placeholder for the value in --help (pflag's "string", "duration", ...). */
  placeholder?: string;
  help: string;
  /** pflag's MarkDeprecated message: accepted, with a warning. */
  deprecated?: string;
  /** Accepted but without effect in Switchyard: why (named in the agent's one start-up warning). */
  unused?: string;
  /** Where the flag comes from: kube-proxy's own set, or Switchyard's additions. */
  origin: 'kube-proxy' | 'switchyard';
}

export class FlagError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FlagError';
  }
}

export interface ParsedFlags {
  /** Values of the flags given (typed); absent flags are absent. */
  values: Map<string, FlagValue>;
  /** Non-flag arguments, in order. */
  args: string[];
  /** pflag's "Flag --x has been deprecated, ..." lines. */
  warnings: string[];
}

const TRUE = new Set(['1', 't', 'T', 'true', 'TRUE', 'True']);
const FALSE = new Set(['0', 'f', 'F', 'false', 'FALSE', 'False']);
const DURATION = /^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$|^0$/;

function invalid(spec: FlagSpec, text: string, want: string): FlagError {
  const name = spec.short === undefined ? `--${spec.name}` : `-${spec.short}, --${spec.name}`;
  return new FlagError(`invalid argument ${JSON.stringify(text)} for "${name}" flag: ${want}`);
}

/** One value of a flag, checked and typed; `previous` is what earlier occurrences gave. */
function convert(spec: FlagSpec, text: string, previous: FlagValue | undefined): FlagValue {
  switch (spec.type) {
    case 'bool':
      if (TRUE.has(text)) return true;
      if (FALSE.has(text)) return false;
      throw invalid(spec, text, 'want true or false');
    case 'int':
      if (!/^[-+]?\d+$/.test(text)) throw invalid(spec, text, 'want an integer');
      return Number(text);
    case 'float':
      if (text.trim() === '' || !Number.isFinite(Number(text))) throw invalid(spec, text, 'want a number');
      return Number(text);
    case 'duration':
      if (!DURATION.test(text)) throw invalid(spec, text, 'want a duration such as 30s, 1m or 1h30m');
      return text;
    case 'enum':
      if (!(spec.values ?? []).includes(text)) throw invalid(spec, text, `valid values are ${(spec.values ?? []).join(', ')}`);
      return text;
    case 'strings': {
      // pflag's StringSlice: the first occurrence replaces the default, later ones append.
      const items = text === '' ? [] : text.split(',').map((s) => s.trim());
      return [...((previous as string[] | undefined) ?? []), ...items];
    }
    case 'mapStringBool': {
      const out: Record<string, boolean> = { ...((previous as Record<string, boolean> | undefined) ?? {}) };
      for (const pair of text.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
        const eq = pair.indexOf('=');
        const value = pair.slice(eq + 1);
        if (eq <= 0 || !(TRUE.has(value) || FALSE.has(value))) throw invalid(spec, text, 'want key=true|false pairs, comma-separated');
        out[pair.slice(0, eq)] = TRUE.has(value);
      }
      return out;
    }
    case 'string':
      return text;
  }
}

export function parseFlags(argv: readonly string[], specs: readonly FlagSpec[]): ParsedFlags {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short !== undefined).map((s) => [s.short!, s]));
  const values = new Map<string, FlagValue>();
  const args: string[] = [];
  const warnings: string[] = [];
  const set = (spec: FlagSpec, text: string): void => {
    values.set(spec.name, convert(spec, text, values.get(spec.name)));
    if (spec.deprecated !== undefined) warnings.push(`Flag --${spec.name} has been deprecated, ${spec.deprecated}`);
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      const spec = byName.get(name);
      if (spec === undefined) throw new FlagError(`unknown flag: --${name}`);
      if (eq >= 0) set(spec, arg.slice(eq + 1));
      else if (spec.type === 'bool') set(spec, 'true');
      else if (i + 1 < argv.length) set(spec, argv[++i]!);
      else throw new FlagError(`flag needs an argument: --${name}`);
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1) {
      // Shorthand: -v 2, -v=2, -v2; bool shorthands may be grouped.
      for (let j = 1; j < arg.length; j++) {
        const c = arg[j]!;
        const spec = byShort.get(c);
        if (spec === undefined) throw new FlagError(`unknown shorthand flag: '${c}' in ${arg}`);
        const rest = arg.slice(j + 1);
        if (rest.startsWith('=')) set(spec, rest.slice(1));
        else if (spec.type === 'bool') {
          set(spec, 'true');
          continue;
        } else if (rest !== '') set(spec, rest);
        else if (i + 1 < argv.length) set(spec, argv[++i]!);
        else throw new FlagError(`flag needs an argument: '${c}' in -${c}`);
        break;
      }
      continue;
    }
    args.push(arg);
  }
  return { values, args, warnings };
}

const PLACEHOLDER: Record<FlagType, string> = { bool: '', string: 'string', int: 'int', float: 'float', duration: 'duration', enum: 'string', strings: 'strings', mapStringBool: 'mapStringBool' };

function flagHead(s: FlagSpec): string {
  const ph = s.placeholder ?? PLACEHOLDER[s.type];
  return `${s.short === undefined ? '    ' : `-${s.short}, `}--${s.name}${ph === '' ? '' : ` ${ph}`}`;
}

function flagText(s: FlagSpec): string {
  let text = s.help;
  if (s.values !== undefined) text += ` One of: ${s.values.join(', ')}.`;
  if (s.default !== undefined && s.default !== '' && !(s.type === 'bool' && s.default === 'false')) text += ` (default ${s.default})`;
  if (s.deprecated !== undefined) text += ` DEPRECATED: ${s.deprecated}`;
  if (s.unused !== undefined) text += ` [not used by Switchyard: ${s.unused}]`;
  return text;
}

/** pflag's FlagUsages layout: flag column, then the wrapped help. */
export function renderFlagHelp(specs: readonly FlagSpec[], width = 100): string {
  const sorted = [...specs].sort((a, b) => a.name.localeCompare(b.name));
  const heads = sorted.map(flagHead);
  const col = Math.min(48, Math.max(...heads.map((h) => h.length)) + 4);
  const lines: string[] = [];
  sorted.forEach((s, i) => {
    const words = flagText(s).split(/\s+/);
    let line = `  ${heads[i]!}`.padEnd(col + 2);
    if (line.length > col + 2) {
      lines.push(line.trimEnd());
      line = ''.padEnd(col + 2);
    }
    let used = false;
    for (const w of words) {
      if (used && line.length + 1 + w.length > width) {
        lines.push(line.trimEnd());
        line = ''.padEnd(col + 2);
        used = false;
      }
      line += (used ? ' ' : '') + w;
      used = true;
    }
    lines.push(line.trimEnd());
  });
  return lines.join('\n');
}

/** A markdown table of flags for docs/flags.md. */
export function renderFlagTable(specs: readonly FlagSpec[]): string {
  const esc = (t: string): string => t.replaceAll('|', '\\|');
  const rows = [...specs]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((s) => {
      const status = s.unused !== undefined ? `accepted, not used: ${s.unused}` : s.deprecated !== undefined ? `deprecated: ${s.deprecated}` : 'used';
      const type = s.type === 'enum' ? (s.values ?? []).join(' \\| ') : (s.placeholder ?? (PLACEHOLDER[s.type] || 'bool'));
      return `| \`--${s.name}\`${s.short === undefined ? '' : ` / \`-${s.short}\``} | ${esc(type)} | ${s.default === undefined || s.default === '' ? '' : `\`${esc(s.default)}\``} | ${s.origin} | ${esc(status)} | ${esc(s.help)} |`;
    });
  return ['| flag | value | default | from | status | meaning |', '| --- | --- | --- | --- | --- | --- |', ...rows].join('\n');
}
