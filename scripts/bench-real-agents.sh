#!/usr/bin/env bash
# Real-agent bench (issue 11): the unmodified agent CLIs people run —
# Claude Code (@anthropic-ai/claude-code), Gemini CLI (@google/gemini-cli)
# and Codex (@openai/codex), installed from npm into $BENCH_DIR/npm — started
# offline at their idle prompt in tmux (pre-seeded config, dummy key, model
# URLs pointing at a dead loopback port), N unmanaged and N under
# `agentmem run` + `agentmem supervise` (defaults) side by side. Reports per
# CLI: idle recognised and reclaimed within how long, RAM actually freed
# (MemAvailable, each cgroup's own usage with swap cache), swap and zswap
# used, typed-word-to-screen p50/p90 against never-reclaimed instances,
# whether typing wakes it, false wake-ups while idle, supervisor CPU.
# docs/real-agents.md says what each CLI needs to start offline.
#
# Needs root, tmux, Node/npm. Applies the agent profile (`agentmem setup
# --apply`: swap file, zswap, KSM) and reverts it on exit, also on failure;
# kills every process it started (whole cgroups: Codex and Gemini CLI leave
# detached daemons). Too heavy for CI.
#
#   scripts/bench-real-agents.sh [bench] [--n 5] [--clis claude,gemini,codex] [--idle-s 600]
#   scripts/bench-real-agents.sh density [--cap 400] [--floor-gib 2] [--time-s 1800]
#   scripts/bench-real-agents.sh record [--idle-s 300] [--typing-s 60]   # detector fixture
#
# Results: a summary on stdout and JSON in $BENCH_DIR/{bench,density}.json
# (BENCH_DIR defaults to /var/tmp/agentmem-real-agents).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v tmux >/dev/null || { echo "bench-real-agents: needs tmux (apt-get install tmux)" >&2; exit 2; }
command -v npm >/dev/null || { echo "bench-real-agents: needs Node.js and npm" >&2; exit 2; }
cargo build --release -q -p agentmem-cli
exec python3 scripts/bench_real_agents.py "$@" \
  --agentmem target/release/agentmem \
  --dir "${BENCH_DIR:-/var/tmp/agentmem-real-agents}"
