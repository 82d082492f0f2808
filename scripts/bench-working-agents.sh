#!/usr/bin/env bash
# Working-agent benchmark: N unmodified agent CLIs each replay a recorded
# conversation through `agentmem replay-model` (scripts/replay-sessions.py),
# one run per CLI and N, and a Markdown table of turns per minute, turn
# latency, RAM held and errors. Unmanaged only: runs under the supervisor are
# not scripted yet (see docs/replay-model.md).
#
#   scripts/bench-working-agents.sh                       # claude, N = 20
#   CLIS="claude gemini codex" NS="20 50 100" TURNS=10 scripts/bench-working-agents.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CLIS=${CLIS:-claude}
NS=${NS:-20}
TURNS=${TURNS:-10}
OUT=${OUT:-/tmp/agentmem-working-agents}
mkdir -p "$OUT"
[ -x target/release/agentmem ] || cargo build --release -p agentmem-cli
for cli in $CLIS; do
    for n in $NS; do
        echo "==> $cli N=$n ($(uptime))" >&2
        python3 scripts/replay-sessions.py --cli "$cli" -n "$n" --turns "$TURNS" \
            --idle-seconds "${IDLE_SECONDS:-60}" --deadline "${DEADLINE:-1500}" \
            --out "$OUT/$cli-$n.json" > "$OUT/$cli-$n.summary.json" || true
    done
done
python3 - "$OUT" <<'PY'
import glob, json, os, sys
print("| CLI | N | turns done | agents with all turns | turns/min | turn p50 / p99 (s) | PSS per agent (MiB) | MemAvailable drop (MiB) | protocol errors (server / screen) | OOM kills | server handling p99, CPU / wall (µs) | server CPU idle (%) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*-*.json"))):
    if f.endswith(".summary.json"):
        continue
    s = json.load(open(f))["summary"]
    lat = s["turn_latency_s"]; pe = s["protocol_errors"]; m = s["memory"]; srv = s["server"]
    idle = srv["idle"]["server_cpu_percent"] if srv["idle"] else None
    fmt = lambda x: "—" if x is None else f"{x:.1f}"
    print(f"| {s['cli']} | {s['n']} | {s['turns_completed']} | {s['agents_with_all_turns']} | {s['turns_per_minute']} "
          f"| {fmt(lat['p50'])} / {fmt(lat['p99'])} | {m['pss_per_agent_mib']} | {m['mem_available_drop_peak_mib']} "
          f"| {pe['server_bad_requests'] + pe['server_not_found']} / {pe['on_screen']} | {s['oom_kills']} "
          f"| {srv.get('handling_cpu_us', {}).get('p99', '—')} / {srv['handling_us']['p99']} | {fmt(idle)} |")
PY
