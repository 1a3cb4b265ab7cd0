"""The official Kubernetes Python client against tug server: paginated lists, a watch resumed
from a resourceVersion, and 410 Gone after compaction followed by a relist.

Run by crates/tug/tests/python_client.rs with KUBECONFIG set; exits non-zero on failure."""

import sys
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config()
v1 = client.CoreV1Api()
ns = "default"

# Paginated list: 25 objects in pages of 10.
for i in range(25):
    v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"page-{i:02d}")))
names, token, pages = [], None, 0
while True:
    resp = v1.list_namespaced_config_map(ns, limit=10, _continue=token)
    pages += 1
    # Every namespace also holds the cluster CA, published by a controller.
    names += [cm.metadata.name for cm in resp.items if cm.metadata.name != "kube-root-ca.crt"]
    token = resp.metadata._continue
    if not token:
        break
assert pages == 3, f"expected 3 pages, got {pages}"
assert names == [f"page-{i:02d}" for i in range(25)], names

# A watch resumed from a resourceVersion sees exactly what came after it.
rv = v1.list_namespaced_config_map(ns).metadata.resource_version
v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="after")))
v1.delete_namespaced_config_map("page-00", ns)
events = []
for ev in watch.Watch().stream(v1.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=2):
    events.append((ev["type"], ev["object"].metadata.name))
    if len(events) == 2:
        break
assert events == [("ADDED", "after"), ("DELETED", "page-00")], events

# After compaction, the old resourceVersion is gone: 410, then a relist works.
old = rv
for i in range(5):
    v1.patch_namespaced_config_map("after", ns, {"data": {"n": str(i)}})
deadline = time.time() + 20
gone = False
while time.time() < deadline and not gone:
    try:
        for ev in watch.Watch().stream(v1.list_namespaced_config_map, ns, resource_version=old, timeout_seconds=1):
            if ev["type"] == "ERROR" and ev["raw_object"].get("code") == 410:
                gone = True
                break
    except ApiException as e:
        gone = e.status == 410
    if not gone:
        time.sleep(0.5)
assert gone, "no 410 Gone for a compacted resourceVersion"
relisted = [cm for cm in v1.list_namespaced_config_map(ns).items if cm.metadata.name != "kube-root-ca.crt"]
assert len(relisted) == 25, len(relisted)
print("python client: ok")
