// deploy/daemonset-windows.yaml: a HostProcess DaemonSet on Windows nodes only, beside the
// Linux one, whose configuration the agent decodes as kernelspace mode with a winkernel section.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { winkernelConfig } from '../../control/backends/hns/winkernel-config.ts';
import { decodeConfiguration } from '../../control/config/kube-proxy-config.ts';

const file = (name: string): string => readFileSync(fileURLToPath(new URL(`../../deploy/${name}`, import.meta.url)), 'utf8');
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- manifests are free-form YAML
const docs = parseAllDocuments(file('daemonset-windows.yaml')).map((d) => d.toJS() as Obj);

describe('Windows DaemonSet', () => {
  it('HostProcess as SYSTEM on the host network, Windows nodes only, probes on 10256', () => {
    const ds = docs.find((d) => d.kind === 'DaemonSet')!;
    const spec = ds.spec.template.spec;
    assert.equal(spec.hostNetwork, true, 'HostProcess pods must use the host network');
    assert.equal(spec.securityContext.windowsOptions.hostProcess, true);
    assert.equal(spec.securityContext.windowsOptions.runAsUserName, 'NT AUTHORITY\\SYSTEM');
    assert.deepEqual(spec.nodeSelector, { 'kubernetes.io/os': 'windows' });
    const c = spec.containers[0];
    assert.deepEqual([c.livenessProbe.httpGet.port, c.readinessProbe.httpGet.port], [10256, 10256]);
    assert.equal(spec.volumes[0].configMap.name, docs.find((d) => d.kind === 'ConfigMap')!.metadata.name);
    const linux = parseAllDocuments(file('daemonset.yaml')).map((d) => d.toJS() as Obj)[0]!;
    assert.deepEqual(linux.spec.template.spec.nodeSelector, { 'kubernetes.io/os': 'linux' }, 'the Linux DaemonSet stays off Windows nodes');
  });

  it('its configuration decodes as kernelspace mode with a winkernel section', () => {
    const cm = docs.find((d) => d.kind === 'ConfigMap')!;
    const loaded = decodeConfiguration(cm.data['config.conf']);
    assert.equal(loaded.kubeProxy.mode, 'kernelspace');
    assert.equal(winkernelConfig(loaded.kubeProxy, {}).networkName, 'cbr0');
  });
});
