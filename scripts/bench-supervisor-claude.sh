#!/usr/bin/env bash
# Page-out of real Claude Code instances under the supervisor (issue 11):
# N unmanaged and N managed side by side; per mode, RAM freed (MemAvailable
# and cgroup usage), SwapCached, zswap pool, disk, resume and typed-word
# latency, supervisor CPU. See the header of bench_supervisor_claude.py.
#
# Needs root, tmux, npm (Claude Code is installed into $BENCH_DIR/npm if
# `claude` is not on PATH), and no other swap area on. Applies the agent
# profile with its own swap file and reverts it on exit, also on failure.
#
#   scripts/bench-supervisor-claude.sh [--agents 10] [--settle-s 30] [--modes swapfile,zswap-lzo-rle]
#
# Results: JSON on stdout and in $BENCH_DIR/results.json
# (BENCH_DIR defaults to /var/tmp/agentmem-bench-claude).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${BENCH_DIR:-/var/tmp/agentmem-bench-claude}"
cargo build --release -q -p agentmem-cli
claude="$(command -v claude || true)"
if [ -z "$claude" ]; then
  mkdir -p "$dir-npm"
  npm install --prefix "$dir-npm" --allow-scripts=@anthropic-ai/claude-code @anthropic-ai/claude-code >&2
  claude="$dir-npm/node_modules/.bin/claude"
fi
exec python3 scripts/bench_supervisor_claude.py \
  --agentmem "$PWD/target/release/agentmem" --claude "$claude" --dir "$dir" "$@"
