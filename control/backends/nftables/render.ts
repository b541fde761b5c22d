// nft transactions from compiled tables. Pure.
// - renderFull makes the whole table right against what the kernel lists: chains whose rules
//   differ are rewritten, unwanted ones deleted, static sets refilled; the table itself, chains
//   already right and the affinity sets (whose elements the kernel writes) are left alone, so a
//   full sync loses no ClientIP affinity and costs little when nothing drifted.
// - renderDiff sends only the difference between two compiled tables: chains whose rules changed
//   are flushed and rewritten, map and set elements added and deleted one by one (O(changes)).
// Order inside a transaction matters: references (rules, verdict elements) go before what they
// point to is deleted, and objects exist before anything points to them.
import { TABLE, type CompiledNft, type NftSet } from './compile.ts';
import type { ExistingTable } from './listing.ts';


export interface RenderedTransaction {
  text: string;
  /** Chains written (flushed and refilled, or added), deleted; elements added, deleted. */
  chainsWritten: number;
  chainsDeleted: number;
  elementsAdded: number;
  elementsDeleted: number;
}

/**
 * A set's identity as the kernel sees it: recreating is needed when this changes. "dynamic" is
 * left out: the kernel adds it by itself to sets that rules update, and nft's JSON omits it.
 */
export function setSignature(s: Pick<NftSet, 'kind' | 'type' | 'flags' | 'timeoutSeconds'>): string {
  return `${s.kind}|${s.type}|${s.flags.filter((f) => f !== 'dynamic').sort().join(',')}|${s.timeoutSeconds}`;
}

function setDecl(s: NftSet): string {
  const parts = [`type ${s.type}`];
  if (s.flags.length > 0) parts.push(`flags ${s.flags.join(',')}`);
  if (s.timeoutSeconds > 0) parts.push(`timeout ${s.timeoutSeconds}s`);
  if (s.comment !== '') parts.push(`comment "${s.comment}"`);
  return `{ ${parts.join(' ; ')} ; }`;
}

const ELEMENTS_PER_LINE = 1000;

class Tx {
  readonly lines: string[] = [];
  readonly prefix: string;
  chainsWritten = 0;
  chainsDeleted = 0;
  elementsAdded = 0;
  elementsDeleted = 0;

  constructor(nftFamily: string) {
    this.prefix = `${nftFamily} ${TABLE}`;
  }

  cmd(verb: string, object: string, name: string, rest = ''): void {
    this.lines.push(`${verb} ${object} ${this.prefix} ${name}${rest === '' ? '' : ` ${rest}`}`);
  }

  rules(chain: string, rules: readonly string[]): void {
    for (const r of rules) this.lines.push(`add rule ${this.prefix} ${chain} ${r}`);
    this.chainsWritten++;
  }

  elements(verb: 'add' | 'delete', set: string, items: readonly string[]): void {
    for (let i = 0; i < items.length; i += ELEMENTS_PER_LINE) this.cmd(verb, 'element', set, `{ ${items.slice(i, i + ELEMENTS_PER_LINE).join(', ')} }`);
    if (verb === 'add') this.elementsAdded += items.length;
    else this.elementsDeleted += items.length;
  }

  done(): RenderedTransaction {
    const { chainsWritten, chainsDeleted, elementsAdded, elementsDeleted } = this;
    return { text: this.lines.length === 0 ? '' : `${this.lines.join('\n')}\n`, chainsWritten, chainsDeleted, elementsAdded, elementsDeleted };
  }
}

function chainDecl(next: CompiledNft, chain: string): string {
  const decl = next.baseChains.get(chain);
  return decl === undefined ? '' : `{ ${decl} ; }`;
}

/**
 * The whole table made right against what the kernel lists (`existing`; undefined when the
 * table does not exist yet): chains whose rules differ from the listing are flushed and
 * refilled, chains not wanted deleted, static sets flushed and refilled; chains that already
 * hold exactly their rules are left alone.
 */
export function renderFull(next: CompiledNft, existing: ExistingTable | undefined): RenderedTransaction {
  const tx = new Tx(next.nftFamily);
  const have: ExistingTable = existing ?? { chains: new Map(), sets: new Map() };
  tx.lines.push(existing === undefined ? `add table ${tx.prefix} { comment "rules for kube-proxy" ; }` : `add table ${tx.prefix}`);
  const recreate = new Set<string>();
  for (const [name, sig] of have.sets) {
    const want = next.sets.get(name);
    if (want === undefined || setSignature(want) !== sig) recreate.add(name);
  }
  const namesRecreated = (rules: readonly string[]): boolean => rules.some((r) => [...r.matchAll(/@(\S+)/g)].some((m) => recreate.has(m[1]!)));
  const decl = (chain: string): string => next.baseChains.get(chain) ?? '';
  const stale = new Set([...have.chains].filter(([chain, c]) => !next.chains.has(chain) || c.decl !== decl(chain)).map(([chain]) => chain));
  const write = [...next.chains].filter(([chain, rules]) => {
    const c = have.chains.get(chain);
    return c === undefined || c.decl !== decl(chain) || !sameRules(c.rules, rules) || namesRecreated(c.rules);
  }).map(([chain]) => chain);
  // 1. Drop references: chains being rewritten or deleted, static sets.
  for (const chain of new Set([...stale, ...write])) if (have.chains.has(chain)) tx.cmd('flush', 'chain', chain);
  for (const [name, sig] of have.sets) {
    const want = next.sets.get(name);
    if (recreate.has(name)) tx.cmd('delete', sig.startsWith('map') ? 'map' : 'set', name);
    else if (want !== undefined && !want.dynamic) tx.cmd('flush', want.kind, name);
  }
  // 2. Delete what is not wanted (or wanted with another hook), then declare what is missing.
  for (const chain of stale) {
    tx.cmd('delete', 'chain', chain);
    tx.chainsDeleted++;
  }
  for (const chain of write) if (!have.chains.has(chain) || stale.has(chain)) tx.cmd('add', 'chain', chain, chainDecl(next, chain));
  for (const [name, s] of next.sets) if (!have.sets.has(name) || recreate.has(name)) tx.cmd('add', s.kind, name, setDecl(s));
  // 3. Fill.
  for (const chain of write) tx.rules(chain, next.chains.get(chain)!);
  for (const [set, elements] of next.elements) tx.elements('add', set, [...elements].map(([k, v]) => `${k}${v}`));
  return tx.done();
}

function sameRules(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((r, i) => r === b[i]);
}

/** Only what changed from `prev` (which the kernel holds) to `next`. */
export function renderDiff(prev: CompiledNft, next: CompiledNft): RenderedTransaction {
  const tx = new Tx(next.nftFamily);
  // Sets whose identity changed are recreated, so the chains that name them are rewritten.
  const recreated = new Set<string>();
  for (const [name, s] of next.sets) {
    const before = prev.sets.get(name);
    if (before !== undefined && setSignature(before) !== setSignature(s)) recreated.add(name);
  }
  const names = (rules: readonly string[]): boolean => rules.some((r) => [...r.matchAll(/@(\S+)/g)].some((m) => recreated.has(m[1]!)));
  const changed: string[] = [];
  const added: string[] = [];
  const stale: string[] = [];
  for (const [chain, rules] of next.chains) {
    const before = prev.chains.get(chain);
    if (before === undefined) added.push(chain);
    else if (!sameRules(before, rules) || names(before)) changed.push(chain);
  }
  for (const chain of prev.chains.keys()) if (!next.chains.has(chain)) stale.push(chain);

  // 1. Drop references: elements going or changing, chains being rewritten or deleted.
  for (const [set, before] of prev.elements) {
    const after = next.elements.get(set);
    const gone = [...before].filter(([k, v]) => after?.get(k) !== v).map(([k]) => k);
    if (gone.length > 0 && after !== undefined) tx.elements('delete', set, gone);
  }
  for (const chain of [...changed, ...stale]) tx.cmd('flush', 'chain', chain);
  // 2. Sets: recreate, add, delete.
  for (const [name, s] of prev.sets) {
    if (!next.sets.has(name) || recreated.has(name)) tx.cmd('delete', s.kind, name);
  }
  for (const [name, s] of next.sets) if (!prev.sets.has(name) || recreated.has(name)) tx.cmd('add', s.kind, name, setDecl(s));
  // 3. New chains, then the rules of new and changed ones, then new elements.
  for (const chain of added) tx.cmd('add', 'chain', chain, chainDecl(next, chain));
  for (const chain of [...added, ...changed]) tx.rules(chain, next.chains.get(chain)!);
  for (const [set, after] of next.elements) {
    const before = prev.sets.has(set) && !recreated.has(set) ? prev.elements.get(set) : undefined;
    const fresh = [...after].filter(([k, v]) => before?.get(k) !== v).map(([k, v]) => `${k}${v}`);
    if (fresh.length > 0) tx.elements('add', set, fresh);
  }
  // 4. Chains nothing points to any more.
  for (const chain of stale) {
    tx.cmd('delete', 'chain', chain);
    tx.chainsDeleted++;
  }
  return tx.done();
}
