#!/usr/bin/env bash
# Latency of one get of a 1 KiB message through each binding and the Rust
# paths, in one run (needs the bindings built: scripts/test-bindings.sh).
# With agentmemd built, also through the daemon: the Rust client, Node.js and
# Python on one socket.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo build --release -q -p agentmem-capi --example get_latency
target/release/examples/get_latency
node bindings/node/bench/get.mjs
target/py-venv/bin/python bindings/python/bench/get.py
