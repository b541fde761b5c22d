"""The Python kubernetes client (Debian's python3-kubernetes) against the test API server.

Reads the server URL from argv; prints one JSON line per step, "ready" once the watch has seen
the current state (the test then adds a Service), and exits when the watch saw it. Every model
is deserialised with the client's own validation, so a response the real server would not send
fails here.
"""
import json
import sys

from kubernetes import client, watch


def say(**fields):
    print(json.dumps(fields), flush=True)


cfg = client.Configuration()
cfg.host = sys.argv[1]
api = client.ApiClient(cfg)
core = client.CoreV1Api(api)

# A chunked list: pages of 2 joined by continue tokens.
names, token, pages = [], None, 0
while True:
    page = core.list_service_for_all_namespaces(limit=2, _continue=token)
    pages += 1
    names += [f"{i.metadata.namespace}/{i.metadata.name}" for i in page.items]
    token = page.metadata._continue
    if not token:
        break
say(step="chunked-list", names=names, pages=pages)

svc = core.read_namespaced_service("s1", "demo")
say(step="get", name=svc.metadata.name, clusterIP=svc.spec.cluster_ip, managedFields=len(svc.metadata.managed_fields or []))

odd = core.list_service_for_all_namespaces(label_selector="app=odd")
say(step="label-selector", names=sorted(i.metadata.name for i in odd.items))

other = core.list_service_for_all_namespaces(field_selector="metadata.namespace=other")
say(step="field-selector", names=[i.metadata.name for i in other.items])

slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice("demo")
say(step="endpointslices", names=[s.metadata.name for s in slices.items], targetRef=slices.items[0].endpoints[0].target_ref.kind)

nodes = core.list_node(field_selector="metadata.name=n0")
say(step="nodes", names=[n.metadata.name for n in nodes.items], kubelet=nodes.items[0].status.node_info.kubelet_version)

# A watch with a label selector and no resourceVersion (the client sends watch=True): the
# current even Services as ADDED, then the one the test adds.
w = watch.Watch()
seen = []
for ev in w.stream(core.list_namespaced_service, "demo", label_selector="app=even", timeout_seconds=60):
    seen.append([ev["type"], ev["object"].metadata.name])
    if len(seen) == 2:
        say(step="ready", seen=seen)
    if ev["object"].metadata.name == "s6":
        w.stop()
say(step="watch", seen=seen)
