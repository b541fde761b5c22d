// Standalone mode: manifests on disk, watched; the same validation; bad files lose nothing else.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { FilesSource } from '../../control/sources/files/source.ts';
import { ModelFeed } from '../../control/sources/model-feed.ts';
import { RejectionLog } from '../../control/sources/rejection-log.ts';
import { waitFor } from '../apiserver/harness.ts';
import { writeManifests } from '../cases/manifests.ts';
import { config, node, serviceCIDRs, services, slices, THIS_NODE } from '../cases/semantics.ts';
import { referenceState, stateText } from '../model/reference.ts';

describe('files source', () => {
  let dir: string;
  let tracker: ChangeTracker;
  let rejections: RejectionLog;
  let files: FilesSource;

  before(async () => {
    dir = writeManifests(mkdtempSync(join(tmpdir(), 'switchyard-files-')));
    tracker = new ChangeTracker(config);
    rejections = new RejectionLog({ warn: () => undefined });
    files = new FilesSource({ dir, sink: new ModelFeed({ tracker, rejections, nodeName: THIS_NODE }), debounceMs: 20 });
    await files.start();
  });

  after(async () => {
    await files?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const has = (key: string): boolean => {
    tracker.flush();
    return tracker.state().families.get(4)!.servicePorts.has(key);
  };

  it('loads multi-document YAML and JSON into the same model as the objects', () => {
    tracker.flush();
    assert.equal(stateText(tracker.state()), stateText(referenceState(config, THIS_NODE, services, slices, node, serviceCIDRs)));
  });

  it('watches the directory: new files, Lists, default namespace', async () => {
    writeFileSync(
      join(dir, 'more.yaml'),
      `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: extra}
  spec: {clusterIP: 10.96.0.90, ports: [{port: 80}]}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: ignored}
`,
    );
    await waitFor('the new service', () => has('default/extra/TCP/v4'));
  });

  it('a broken file is reported and everything else keeps working', async () => {
    writeFileSync(join(dir, 'broken.yaml'), 'kind: Service\nmetadata: {name: [unclosed\n');
    await waitFor('the decode error', () => (rejections.counts().get('decode-error') ?? 0) >= 1);
    assert.ok(has('demo/web:http/TCP/v4'));
    assert.ok(has('default/extra/TCP/v4'));
  });

  it('a removed file removes its objects', async () => {
    rmSync(join(dir, 'more.yaml'));
    await waitFor('the service to go', () => !has('default/extra/TCP/v4'));
  });
});

describe('files source: the directory vanishes', () => {
  it('keeps the last good state and reports the error instead of throwing', async () => {
    const dir = writeManifests(mkdtempSync(join(tmpdir(), 'switchyard-vanish-')));
    const tracker = new ChangeTracker(config);
    const rejections = new RejectionLog({ warn: () => undefined });
    const files = new FilesSource({ dir, sink: new ModelFeed({ tracker, rejections, nodeName: THIS_NODE }), debounceMs: 20 });
    await files.start();
    rmSync(dir, { recursive: true, force: true });
    await waitFor('the error to be reported', () => (rejections.counts().get('decode-error') ?? 0) > 0);
    tracker.flush();
    assert.ok(tracker.state().families.get(4)!.servicePorts.has('demo/web:http/TCP/v4'), 'the last good state stays');
    await files.stop();
  });
});
