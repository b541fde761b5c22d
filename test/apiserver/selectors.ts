// Label and field selectors as kube-apiserver parses and evaluates them: label requirements
// `k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)` joined by commas; field
// selectors `f=v`, `f==v`, `f!=v` over the fields a kind supports. What does not parse is a
// SelectorError, which the server answers with 400 BadRequest, as the real one does.

export class SelectorError extends Error {}

type Requirement = (labels: Record<string, string>) => boolean;

/** Splits on commas that are not inside parentheses. */
function terms(selector: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of selector) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  out.push(current);
  return out.map((t) => t.trim()).filter((t) => t !== '');
}

const KEY = /^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?\/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$/;

function key(k: string, term: string): string {
  const trimmed = k.trim();
  if (!KEY.test(trimmed)) throw new SelectorError(`unable to parse requirement: invalid label key "${trimmed}" in "${term}"`);
  return trimmed;
}

function parseLabelTerm(term: string): Requirement {
  const set = /^(\S+)\s+(in|notin)\s+\((.*)\)$/.exec(term);
  if (set !== null) {
    const k = key(set[1]!, term);
    const values = new Set(set[3]!.split(',').map((v) => v.trim()));
    return set[2] === 'in' ? (l) => k in l && values.has(l[k]!) : (l) => !(k in l) || !values.has(l[k]!);
  }
  if (term.startsWith('!')) {
    const k = key(term.slice(1), term);
    return (l) => !(k in l);
  }
  const op = /^([^=!]+)(!=|==|=)(.*)$/.exec(term);
  if (op !== null) {
    const k = key(op[1]!, term);
    const v = op[3]!.trim();
    return op[2] === '!=' ? (l) => l[k] !== v : (l) => l[k] === v;
  }
  const k = key(term, term);
  return (l) => k in l;
}

/** A parsed label selector; throws SelectorError for what the real server rejects. */
export function labelSelector(selector: string): (labels: Record<string, string> | undefined) => boolean {
  const requirements = terms(selector).map(parseLabelTerm);
  return (labels) => requirements.every((r) => r(labels ?? {}));
}

/** The field selectors each kind's registry supports (the rest is "field label not supported"). */
const FIELDS: Record<string, (obj: Record<string, unknown>) => string | undefined> = {
  'metadata.name': (o) => (o.metadata as { name?: string } | undefined)?.name,
  'metadata.namespace': (o) => (o.metadata as { namespace?: string } | undefined)?.namespace,
};
const KIND_FIELDS: Record<string, Record<string, (obj: Record<string, unknown>) => string | undefined>> = {
  Service: FIELDS,
  EndpointSlice: { ...FIELDS, addressType: (o) => o.addressType as string | undefined },
  Node: { ...FIELDS, 'spec.unschedulable': (o) => String(Boolean((o.spec as { unschedulable?: boolean } | undefined)?.unschedulable)) },
};

export function fieldSelector(kind: string, selector: string): (obj: Record<string, unknown>) => boolean {
  const checks = terms(selector).map((term) => {
    const op = /^([^=!]+)(!=|==|=)(.*)$/.exec(term);
    if (op === null) throw new SelectorError(`invalid selector: '${term}'; can't understand '${term}'`);
    const field = op[1]!.trim();
    const get = KIND_FIELDS[kind]?.[field];
    if (get === undefined) throw new SelectorError(`field label not supported: ${field}`);
    const v = op[3]!.trim();
    return op[2] === '!=' ? (o: Record<string, unknown>) => (get(o) ?? '') !== v : (o: Record<string, unknown>) => (get(o) ?? '') === v;
  });
  return (obj) => checks.every((c) => c(obj));
}

/** Kept for callers that match one selector once. */
export function matchesLabels(selector: string, labels: Record<string, string> | undefined): boolean {
  return labelSelector(selector)(labels);
}
