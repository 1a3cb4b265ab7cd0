"""The official Kubernetes Python client's typed models against tug server: what create and
delete answer decodes into the model of the kind asked about, and a CSR records who asked.

Run by crates/tug/tests/python_client.rs with KUBECONFIG set; exits non-zero on failure."""

import base64
import subprocess

from kubernetes import client, config

config.load_kube_config()
v1 = client.CoreV1Api()
ns = "default"
meta = client.V1ObjectMeta(name="typed")

# A created Service carries the empty load balancer status Kubernetes gives it.
svc = v1.create_namespaced_service(
    ns,
    client.V1Service(
        metadata=meta,
        spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)], selector={"app": "typed"}),
    ),
)
assert svc.status is not None and svc.status.load_balancer is not None, svc.status

# DELETE answers with the deleted Service (and Pod), but with a Success Status for kinds
# whose registry says so (ConfigMaps).
gone = v1.delete_namespaced_service("typed", ns)
assert gone.kind == "Service" and gone.metadata.name == "typed" and gone.spec.ports[0].port == 80, gone
v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=meta))
status = v1.delete_namespaced_config_map("typed", ns)
# The client's model for this answer is a plain object: the Status as JSON.
status = status if isinstance(status, dict) else client.ApiClient().sanitize_for_serialization(status)
assert status["kind"] == "Status" and status["status"] == "Success", status
assert status["details"] == {"name": "typed", "kind": "configmaps", "uid": status["details"]["uid"]}, status
v1.create_namespaced_pod(
    ns,
    client.V1Pod(metadata=meta, spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")])),
)
pod = v1.delete_namespaced_pod("typed", ns)
assert pod.kind == "Pod" and pod.metadata.name == "typed", pod

# A CSR names its requester, whatever the body claims.
who = client.AuthenticationV1Api().create_self_subject_review(client.V1SelfSubjectReview()).status.user_info
pem = subprocess.run(
    ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
     "-nodes", "-keyout", "/dev/null", "-subj", "/CN=typed"],
    check=True, capture_output=True,
).stdout
csr = client.CertificatesV1Api().create_certificate_signing_request(
    client.V1CertificateSigningRequest(
        metadata=meta,
        spec=client.V1CertificateSigningRequestSpec(
            request=base64.b64encode(pem).decode(),
            signer_name="kubernetes.io/kube-apiserver-client",
            usages=["client auth"],
            username="mallory",
            groups=["system:masters", "impostors"],
        ),
    )
)
assert csr.spec.username == who.username, (csr.spec.username, who.username)
assert csr.spec.groups == who.groups, (csr.spec.groups, who.groups)
print("python typed models: ok")
