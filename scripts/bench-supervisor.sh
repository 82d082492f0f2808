#!/usr/bin/env bash
# Benchmark of the agent supervisor (issue 6): N test agents under
# `agentmem run`, the default agent profile from `agentmem setup --apply`,
# and `agentmem supervise`. Reports effective idle memory against unmanaged
# PSS, resume-to-first-response latency (never reclaimed / reclaimed with
# prefetch / without), and the supervisor's CPU with all agents idle.
#
# Needs root. Changes zswap, swap, vm and KSM settings through
# `agentmem setup --apply` and reverts them on exit, also on failure.
#
#   scripts/bench-supervisor.sh [--agents 20] [--heap-mb 96] [--idle-s 60] [--rounds 3]
#
# Results: a summary on stdout and JSON in $BENCH_DIR/results.json
# (BENCH_DIR defaults to /var/tmp/agentmem-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p agentmem-cli -p agentmem-supervisor
exec python3 scripts/bench_supervisor.py \
  --agentmem target/release/agentmem \
  --test-agent target/release/agentmem-test-agent \
  --dir "${BENCH_DIR:-/var/tmp/agentmem-bench}" "$@"
