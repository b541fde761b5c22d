// What the kernel holds in our table, from `nft -t -y list table FAMILY kube-proxy` (terse: no
// set elements; -y: numeric priorities). Pure. The text form is used, not JSON, because a full
// sync compares each chain's rules with what it would write: the compiler writes rules the way
// nft prints them, so an unchanged chain is recognised and left alone (at 10k services, flushing
// and refilling every chain costs the kernel a minute; listing costs seconds). A rule that nft
// prints differently from how it was written only costs a needless rewrite, never a wrong table.
import { setSignature } from './render.ts';

export interface ListedChain {
  /** "type nat hook prerouting priority -100" for a base chain, '' for a regular one. */
  decl: string;
  rules: readonly string[];
}

/** Our table as listed: chain -> declaration and rules, set or map -> signature. */
export interface ExistingTable {
  chains: ReadonlyMap<string, ListedChain>;
  sets: ReadonlyMap<string, string>;
}

const UNIT_SECONDS: Record<string, number> = { d: 86400, h: 3600, m: 60, s: 1, ms: 0.001 };

/** nft's duration text ("3h", "1m39s992ms", "10800s") in whole seconds. */
export function parseNftDuration(text: string): number {
  let seconds = 0;
  let rest = text;
  while (rest !== '') {
    const m = /^(\d+)(ms|d|h|m|s)/.exec(rest);
    if (m === null) throw new Error(`not an nft duration: ${JSON.stringify(text)}`);
    seconds += Number(m[1]) * UNIT_SECONDS[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return Math.floor(seconds);
}

interface OpenSet {
  kind: 'set' | 'map';
  name: string;
  type: string;
  flags: string[];
  timeoutSeconds: number;
}

export function parseListingText(text: string): ExistingTable {
  const chains = new Map<string, ListedChain>();
  const sets = new Map<string, string>();
  let chain: { name: string; decl: string; rules: string[] } | undefined;
  let set: OpenSet | undefined;
  for (const line of text.split('\n')) {
    const open = /^\t(chain|set|map) (\S+) \{$/.exec(line);
    if (open !== null) {
      const [, what, name] = open as unknown as [string, 'chain' | 'set' | 'map', string];
      if (what === 'chain') chain = { name, decl: '', rules: [] };
      else set = { kind: what, name, type: '', flags: [], timeoutSeconds: 0 };
      continue;
    }
    if (line === '\t}') {
      if (chain !== undefined) chains.set(chain.name, { decl: chain.decl, rules: chain.rules });
      if (set !== undefined) sets.set(set.name, setSignature(set));
      chain = undefined;
      set = undefined;
      continue;
    }
    if (!line.startsWith('\t\t')) continue;
    const body = line.slice(2);
    if (chain !== undefined) {
      const hook = /^(type \S+ hook \S+ priority -?\d+);/.exec(body);
      if (hook !== null && chain.rules.length === 0 && chain.decl === '') chain.decl = hook[1]!;
      else if (!(chain.rules.length === 0 && /^comment "/.test(body))) chain.rules.push(body);
    } else if (set !== undefined) {
      const [word, ...rest] = body.split(' ');
      const value = rest.join(' ');
      if (word === 'type') set.type = value;
      else if (word === 'flags') set.flags = value.split(',');
      else if (word === 'timeout') set.timeoutSeconds = parseNftDuration(value);
    }
  }
  return { chains, sets };
}
