// The API's view beside the kernel's: what the agent serves from its compile, and the join
// `switchyard services` makes with what the pinned maps hold.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileDatapath } from '../../control/backends/ebpf/compile.ts';
import { apiFrontends, joinApiView, type KernelFrontend } from '../../control/inspect/api-view.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { nodeFacts } from '../../control/model/node.ts';
import { service, slice } from '../cases/objects.ts';
import { config, node } from '../cases/semantics.ts';

function compiled(): ReturnType<typeof compileDatapath> {
  const t = new ChangeTracker(config, nodeFacts('n0', node));
  t.upsertService(service({ name: 'web', clusterIPs: ['10.96.0.10', 'fd00:96::10'], ports: [{ name: 'http', port: 80, targetPort: 8080 }] }));
  t.upsertSlice(slice({ name: 'web-a', service: 'web', ports: [{ name: 'http', port: 8080 }], endpoints: [{ ip: '10.244.0.11', node: 'n0' }, { ip: '10.244.1.11', node: 'n1' }] }));
  t.upsertSlice(slice({ name: 'web-b', service: 'web', family: 6, ports: [{ name: 'http', port: 8080 }], endpoints: [{ ip: 'fd00:244::11', node: 'n0' }] }));
  t.flush();
  return compileDatapath(t.state());
}

describe('API view', () => {
  it('serves every compiled frontend with its service port and backend addresses', () => {
    const view = apiFrontends(compiled());
    assert.deepEqual(view.map((f) => f.scope), ['external', 'internal', 'external', 'internal'], 'pods outside the cluster CIDR masquerade: an internal twin each');
    assert.deepEqual(view.filter((f) => f.scope === 'external'), [
      { frontend: '10.96.0.10:80', protocol: 'TCP', scope: 'external', servicePort: 'demo/web:http/TCP/v4', backends: ['10.244.0.11:8080', '10.244.1.11:8080'] },
      { frontend: '[fd00:96::10]:80', protocol: 'TCP', scope: 'external', servicePort: 'demo/web:http/TCP/v6', backends: ['[fd00:244::11]:8080'] },
    ]);
  });

  it('joins by frontend: in sync, differs, left over in the kernel, missing from it', () => {
    const api = apiFrontends(compiled()).filter((f) => f.scope === 'external');
    const kernel: KernelFrontend[] = [
      { frontend: '10.96.0.10:80', protocol: 'TCP', scope: 'external', backendAddresses: ['10.244.1.11:8080', '10.244.0.11:8080'] },
      { frontend: '[fd00:96::10]:80', protocol: 'TCP', scope: 'external', backendAddresses: [] },
      { frontend: '10.96.0.99:53', protocol: 'UDP', scope: 'external', backendAddresses: ['10.244.0.53:53'] },
    ];
    const joined = joinApiView(kernel, api);
    assert.deepEqual(joined.map((j) => [j.kernel?.frontend ?? j.api?.frontend, j.status]), [
      ['10.96.0.10:80', 'in-sync'],
      ['[fd00:96::10]:80', 'differs'],
      ['10.96.0.99:53', 'not-in-api'],
    ]);
    const missing = joinApiView(kernel.slice(0, 1), api).at(-1)!;
    assert.deepEqual([missing.kernel, missing.api?.frontend, missing.status], [undefined, '[fd00:96::10]:80', 'missing']);
  });
});
