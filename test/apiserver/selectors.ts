// Label and field selectors as the API server evaluates them (the subset a proxy uses).

export function matchesLabels(selector: string, labels: Record<string, string> | undefined): boolean {
  const have = labels ?? {};
  for (const raw of selector.split(',')) {
    const term = raw.trim();
    if (term === '') continue;
    if (term.startsWith('!')) {
      if (term.slice(1) in have) return false;
    } else if (term.includes('!=')) {
      const [k, v] = term.split('!=');
      if (have[k!] === v) return false;
    } else if (term.includes('=')) {
      const [k, v] = term.split(/==?/);
      if (have[k!] !== v) return false;
    } else if (!(term in have)) {
      return false;
    }
  }
  return true;
}

export function matchesFields(selector: string, meta: { name?: string; namespace?: string } | undefined): boolean {
  for (const raw of selector.split(',')) {
    const term = raw.trim();
    if (term === '') continue;
    const [k, v] = term.split(/==?/);
    const actual = k === 'metadata.name' ? meta?.name : k === 'metadata.namespace' ? meta?.namespace : undefined;
    if (actual !== v) return false;
  }
  return true;
}
