// Writes the semantic cluster as a manifests directory (multi-document YAML), as a user of the
// standalone mode would keep it.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { node, serviceCIDRs, services, slices } from './semantics.ts';

export function writeManifests(dir = mkdtempSync(join(tmpdir(), 'switchyard-manifests-'))): string {
  writeFileSync(join(dir, 'services.yaml'), services.map((s) => stringify(s)).join('---\n'));
  writeFileSync(join(dir, 'endpointslices.yaml'), slices.map((s) => stringify(s)).join('---\n'));
  writeFileSync(join(dir, 'node.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Node', ...node }));
  writeFileSync(join(dir, 'servicecidrs.yaml'), serviceCIDRs.map((c) => stringify(c)).join('---\n'));
  return dir;
}
