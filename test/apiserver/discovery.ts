// The discovery documents kubectl and other clients read before they ask for a resource:
// /api, /apis, /api/v1, /apis/discovery.k8s.io/v1 and /apis/networking.k8s.io/v1 (the legacy, unaggregated forms, which
// every client falls back to when aggregated discovery is not offered), and /version.
import { KINDS, type KindName } from '../../control/sources/kube/kinds.ts';

export const NAMESPACED: Readonly<Record<KindName, boolean>> = { Service: true, EndpointSlice: true, Node: false, ServiceCIDR: false };
const SHORT_NAMES: Readonly<Record<KindName, string[]>> = { Service: ['svc'], EndpointSlice: [], Node: ['no'], ServiceCIDR: [] };
const VERBS = ['get', 'list', 'watch'];

/** "services", "endpointslices", "nodes": the last segment of the collection path. */
export function plural(kind: KindName): string {
  return KINDS[kind].path.slice(KINDS[kind].path.lastIndexOf('/') + 1);
}

/** "/api/v1", "/apis/discovery.k8s.io/v1": the collection path without its resource. */
export function groupVersionPath(kind: KindName): string {
  return KINDS[kind].path.slice(0, KINDS[kind].path.lastIndexOf('/'));
}

function resourceList(groupVersion: string, absent: ReadonlySet<KindName>): object {
  const kinds = (Object.keys(KINDS) as KindName[]).filter((k) => KINDS[k].apiVersion === groupVersion && !absent.has(k));
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion,
    resources: kinds.map((k) => ({
      name: plural(k),
      singularName: k.toLowerCase(),
      namespaced: NAMESPACED[k],
      kind: k,
      verbs: VERBS,
      ...(SHORT_NAMES[k].length > 0 ? { shortNames: SHORT_NAMES[k] } : {}),
    })),
  };
}

/** The discovery document served at `path`, if there is one; `absent` kinds are not served (an older API server). */
export function discovery(path: string, absent: ReadonlySet<KindName> = new Set()): object | undefined {
  switch (path) {
    case '/api':
      return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '127.0.0.1' }] };
    case '/apis':
      return {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: [
          {
            name: 'discovery.k8s.io',
            versions: [{ groupVersion: 'discovery.k8s.io/v1', version: 'v1' }],
            preferredVersion: { groupVersion: 'discovery.k8s.io/v1', version: 'v1' },
          },
          ...(absent.has('ServiceCIDR')
            ? []
            : [{ name: 'networking.k8s.io', versions: [{ groupVersion: 'networking.k8s.io/v1', version: 'v1' }], preferredVersion: { groupVersion: 'networking.k8s.io/v1', version: 'v1' } }]),
        ],
      };
    case '/api/v1':
      return resourceList('v1', absent);
    case '/apis/discovery.k8s.io/v1':
      return resourceList('discovery.k8s.io/v1', absent);
    case '/apis/networking.k8s.io/v1':
      return absent.has('ServiceCIDR') ? undefined : resourceList('networking.k8s.io/v1', absent);
    case '/version':
      return { major: '1', minor: '32', gitVersion: 'v1.32.0-switchyard-test', platform: 'linux/amd64' };
    default:
      return undefined;
  }
}
