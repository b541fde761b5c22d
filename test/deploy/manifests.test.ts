// deploy/: the manifests parse and keep their promises — RBAC exactly as needed, probes on the
// health port, the mounts the datapath needs, a small capability set, a config the agent accepts.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { decodeConfiguration } from '../../control/config/kube-proxy-config.ts';
import { PLACEHOLDER_HOST } from '../../control/sources/kube/bootstrap.ts';

const deploy = fileURLToPath(new URL('../../deploy/', import.meta.url));
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- manifests are free-form YAML
const docs = (file: string): Obj[] => parseAllDocuments(readFileSync(`${deploy}${file}`, 'utf8')).map((d) => d.toJS() as Obj);

describe('deploy manifests', () => {
  it('RBAC: list and watch services, endpointslices, nodes, servicecidrs; nothing else (the agent writes nothing)', () => {
    const role = docs('rbac.yaml').find((d) => d.kind === 'ClusterRole')!;
    const grants = new Set<string>();
    for (const rule of role.rules as Obj[]) for (const g of rule.apiGroups) for (const r of rule.resources) for (const v of rule.verbs) grants.add(`${g}/${r}:${v}`);
    assert.deepEqual([...grants].sort(), [
      '/nodes:list', '/nodes:watch', '/services:list', '/services:watch',
      'discovery.k8s.io/endpointslices:list', 'discovery.k8s.io/endpointslices:watch',
      'networking.k8s.io/servicecidrs:list', 'networking.k8s.io/servicecidrs:watch',
    ]);
    const binding = docs('rbac.yaml').find((d) => d.kind === 'ClusterRoleBinding')!;
    assert.equal(binding.roleRef.name, 'switchyard');
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'switchyard', namespace: 'kube-system' }]);
  });

  it('DaemonSet: host network, node-critical, tolerates everything, probes on 10256', () => {
    const ds = docs('daemonset.yaml')[0]!;
    const spec = ds.spec.template.spec;
    assert.equal(spec.hostNetwork, true);
    assert.equal(spec.priorityClassName, 'system-node-critical');
    assert.deepEqual(spec.tolerations, [{ operator: 'Exists' }]);
    assert.equal(spec.dnsPolicy, 'Default', 'no cluster DNS: it is a ClusterIP the agent has yet to program');
    assert.equal(spec.serviceAccountName, 'switchyard');
    const c = spec.containers[0];
    assert.deepEqual([c.livenessProbe.httpGet.path, c.livenessProbe.httpGet.port], ['/livez', 10256]);
    assert.deepEqual([c.readinessProbe.httpGet.path, c.readinessProbe.httpGet.port], ['/healthz', 10256]);
  });

  it('DaemonSet: bpffs, /lib/modules, xtables lock, cgroup and config mounted; a small capability set', () => {
    const spec = docs('daemonset.yaml')[0]!.spec.template.spec;
    const c = spec.containers[0];
    const mounts = Object.fromEntries((c.volumeMounts as Obj[]).map((m) => [m.mountPath, m]));
    const volumes = Object.fromEntries((spec.volumes as Obj[]).map((v) => [v.name, v]));
    for (const [path, host] of [['/sys/fs/bpf', '/sys/fs/bpf'], ['/lib/modules', '/lib/modules'], ['/run/xtables.lock', '/run/xtables.lock']] as const) {
      assert.ok(mounts[path], `${path} is mounted`);
      assert.equal(volumes[mounts[path].name].hostPath.path, host);
    }
    assert.equal(mounts['/sys/fs/bpf'].mountPropagation, 'HostToContainer');
    assert.ok(mounts['/var/lib/switchyard'] && volumes[mounts['/var/lib/switchyard'].name].configMap.name === 'switchyard');
    assert.equal(c.securityContext.privileged, false);
    assert.deepEqual(c.securityContext.capabilities, { drop: ['ALL'], add: ['BPF', 'NET_ADMIN', 'SYS_ADMIN', 'PERFMON'] });
    assert.ok((c.args as string[]).includes('--config=/var/lib/switchyard/config.conf'));
  });

  it('ConfigMap: the agent\'s strict decoder accepts it', () => {
    const cm = docs('configmap.yaml')[0]!;
    const c = decodeConfiguration(cm.data['config.conf']);
    assert.equal(c.kubeProxy.clusterCIDR, '10.244.0.0/16');
    assert.equal(c.switchyard.cgroupRoot, '/run/switchyard/cgroupv2');
    const ds = docs('daemonset.yaml')[0]!.spec.template.spec;
    const cgroupMount = (ds.containers[0].volumeMounts as Obj[]).find((m) => m.name === 'cgroup');
    assert.equal(cgroupMount?.mountPath, c.switchyard.cgroupRoot, 'the cgroup is mounted where the config says');
  });

  it('ConfigMap: a kubeconfig with the API server\'s real address (a placeholder to replace) and the service account\'s files', () => {
    const cm = docs('configmap.yaml')[0]!;
    const c = decodeConfiguration(cm.data['config.conf']);
    const ds = docs('daemonset.yaml')[0]!.spec.template.spec;
    const configMount = (ds.containers[0].volumeMounts as Obj[]).find((m) => m.name === 'config')!;
    assert.equal((c.kubeProxy.clientConnection as Obj).kubeconfig, `${configMount.mountPath}/kubeconfig.conf`, 'config.conf names the kubeconfig.conf beside it');
    const kc = parseAllDocuments(cm.data['kubeconfig.conf'])[0]!.toJS() as Obj;
    assert.equal(kc.clusters[0].cluster.server, `https://${PLACEHOLDER_HOST}:6443`);
    assert.equal(kc.clusters[0].cluster['certificate-authority'], '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt');
    assert.equal(kc.users[0].user.tokenFile, '/var/run/secrets/kubernetes.io/serviceaccount/token');
  });
});
