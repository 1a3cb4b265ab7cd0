#!/usr/bin/env bash
# Runs tugboat's whole test suite. Installs what the tests need first (Debian packages; needs
# root when they are missing). The tests start and stop their own etcd servers on free
# loopback ports, so nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tug-target}"

if [ ! -x /usr/bin/etcd ] || [ ! -x /usr/bin/etcdctl ]; then
    echo "installing etcd-server and etcd-client (the etcd backend's tests run a real etcd 3.4)..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null
fi

cargo test --workspace "$@"
