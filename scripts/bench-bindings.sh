#!/usr/bin/env bash
# Latency of one get of a 1 KiB message through each binding and the Rust
# paths, in one run: embedded, then through a fresh agentmemd on a temporary
# socket (the Rust client, the C API, Node.js and Python). Needs the
# bindings built (scripts/test-bindings.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo build --release -q -p agentmem-capi --example get_latency -p agentmem-daemon
tmp=$(mktemp -d)
pid=
trap '[[ -n $pid ]] && kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
echo "# embedded"
target/release/examples/get_latency
node bindings/node/bench/get.mjs
target/py-venv/bin/python bindings/python/bench/get.py
echo "# through agentmemd"
sock="$tmp/agentmemd.sock"
target/release/agentmemd --ram-only --socket "$sock" --log warn 2>"$tmp/log" &
pid=$!
for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.1; done
target/release/examples/get_latency "$sock" | grep daemon
node bindings/node/bench/get.mjs "$sock"
target/py-venv/bin/python bindings/python/bench/get.py "$sock"
