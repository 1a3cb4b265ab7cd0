#!/usr/bin/env bash
# Benchmarks the embedded store against a real etcd 3.4 on this machine, in one run.
# Starts a throwaway single-member etcd on loopback (data on the same disk as the embedded
# store's), runs `tug bench store`, and stops etcd. Extra arguments go to `tug bench store`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tug-target}"

if [ ! -x /usr/bin/etcd ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null
fi
cargo build --release -p tug

work=$(mktemp -d /var/tmp/tug-bench.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
client=$(free_port); peer=$(free_port)
/usr/bin/etcd --name bench --data-dir "$work/etcd" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "bench=http://127.0.0.1:$peer" >"$work/etcd.log" 2>&1 &
etcd_pid=$!
trap 'kill $etcd_pid 2>/dev/null; wait $etcd_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
    ETCDCTL_API=3 /usr/bin/etcdctl --endpoints "127.0.0.1:$client" endpoint health >/dev/null 2>&1 && break
    sleep 0.1
done

"$CARGO_TARGET_DIR/release/tug" bench store --data-dir "$work/embedded" --etcd "http://127.0.0.1:$client" "$@"
