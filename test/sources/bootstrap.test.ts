// The bootstrap check: which API server addresses a node with no state cannot reach (the
// kubernetes Service's ClusterIP, any address in the service range, the shipped placeholder), and
// kubeadm's kubeconfig (tokenFile) loaded with its token file.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { agentKubeConfig, apiServerProblem, BootstrapError } from '../../control/sources/kube/bootstrap.ts';

const none = { kubernetesServiceHost: undefined, serviceCIDRs: [], viaClusterIP: false };

describe('bootstrap: the API server address', () => {
  it('a real address passes; the kubernetes ClusterIP and the service range do not, unless told', () => {
    assert.equal(apiServerProblem('https://10.254.0.200:6443', { ...none, kubernetesServiceHost: '10.96.0.1', serviceCIDRs: ['10.96.0.0/12'] }), undefined);
    assert.equal(apiServerProblem('https://control-plane.example:6443', { ...none, kubernetesServiceHost: '10.96.0.1' }), undefined);
    const byEnv = apiServerProblem('https://10.96.0.1:443', { ...none, kubernetesServiceHost: '10.96.0.1' });
    assert.match(byEnv ?? '', /^the API server address https:\/\/10\.96\.0\.1:443 is a ClusterIP \(it is KUBERNETES_SERVICE_HOST/);
    assert.match(byEnv ?? '', /clientConnection\.kubeconfig/);
    const byRange = apiServerProblem('https://[fd00:96::1]:443', { ...none, serviceCIDRs: ['10.96.0.0/12', 'fd00:96::/108'] });
    assert.match(byRange ?? '', /lies in the service range fd00:96::\/108/);
    assert.equal(apiServerProblem('https://10.96.0.1:443', { kubernetesServiceHost: '10.96.0.1', serviceCIDRs: ['10.96.0.0/12'], viaClusterIP: true }), undefined);
  });

  it('the shipped placeholder is refused, told or not', () => {
    assert.match(apiServerProblem('https://api-server.invalid:6443', { ...none, viaClusterIP: true }) ?? '', /still the placeholder/);
  });

  it('kubeadm\'s kubeconfig: its tokenFile becomes a token re-read from the file; the in-cluster ClusterIP is refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-bootstrap-'));
    try {
      writeFileSync(join(dir, 'token'), 'sa-token-1');
      writeFileSync(join(dir, 'kubeconfig.conf'), `apiVersion: v1
kind: Config
clusters: [{ name: default, cluster: { server: 'https://10.254.0.200:6443', insecure-skip-tls-verify: true } }]
contexts: [{ name: default, context: { cluster: default, user: default } }]
current-context: default
users: [{ name: default, user: { tokenFile: ${join(dir, 'token')} } }]
`);
      const kc = agentKubeConfig({ kubeconfig: join(dir, 'kubeconfig.conf') }, { KUBERNETES_SERVICE_HOST: '10.96.0.1' });
      const opts: { headers: Record<string, string> } = { headers: {} };
      await kc.applyToHTTPSOptions(opts);
      assert.equal(opts.headers.Authorization, 'Bearer sa-token-1');
      // --master at the ClusterIP (what the in-cluster config amounts to) is refused as well.
      assert.throws(() => agentKubeConfig({ master: 'https://10.96.0.1:443' }, { KUBERNETES_SERVICE_HOST: '10.96.0.1' }), BootstrapError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
