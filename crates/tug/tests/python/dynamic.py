"""The official Kubernetes Python client's dynamic client with a custom resource: a
CustomResourceDefinition is created through the typed API, and once it is established the
dynamic client finds the kind by discovery and creates, lists, patches and deletes objects.

Run by crates/tug/tests/python_client.rs with KUBECONFIG set; exits non-zero on failure."""

import time

from kubernetes import client, config, dynamic

config.load_kube_config()
api = client.ApiClient()
ext = client.ApiextensionsV1Api(api)
crd = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "crontabs.stable.example.com"},
    "spec": {
        "group": "stable.example.com",
        "scope": "Namespaced",
        "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                "type": "object",
                "properties": {"cronSpec": {"type": "string"}, "replicas": {"type": "integer"}},
            }}}},
        }],
    },
}
ext.create_custom_resource_definition(crd)
deadline = time.time() + 20
while True:
    got = ext.read_custom_resource_definition("crontabs.stable.example.com")
    conditions = {c.type: c.status for c in (got.status.conditions or [])}
    if conditions.get("Established") == "True":
        break
    assert time.time() < deadline, got.status
    time.sleep(0.2)

dyn = dynamic.DynamicClient(api)
crontabs = dyn.resources.get(api_version="stable.example.com/v1", kind="CronTab")
assert crontabs.namespaced and crontabs.name == "crontabs", crontabs
made = crontabs.create(
    namespace="default",
    body={"apiVersion": "stable.example.com/v1", "kind": "CronTab",
          "metadata": {"name": "nightly"}, "spec": {"cronSpec": "0 3 * * *", "replicas": 1}},
)
assert made.spec.cronSpec == "0 3 * * *", made
listed = crontabs.get(namespace="default")
assert [i.metadata.name for i in listed.items] == ["nightly"], listed
patched = crontabs.patch(
    namespace="default", name="nightly",
    body={"spec": {"replicas": 3}},
    content_type="application/merge-patch+json",
)
assert patched.spec.replicas == 3 and patched.spec.cronSpec == "0 3 * * *", patched
crontabs.delete(namespace="default", name="nightly")
assert crontabs.get(namespace="default").items == []
ext.delete_custom_resource_definition("crontabs.stable.example.com")
print("python dynamic client: ok")
