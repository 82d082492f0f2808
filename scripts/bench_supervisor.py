#!/usr/bin/env python3
"""Driver of scripts/bench-supervisor.sh (see there). Python only for timing
and bookkeeping: every action goes through the `agentmem` command or its
control socket, as an orchestrator would."""

import argparse, json, os, signal, socket, statistics, subprocess, sys, time

p = argparse.ArgumentParser()
p.add_argument("--agentmem", required=True)
p.add_argument("--test-agent", required=True)
p.add_argument("--dir", required=True)
p.add_argument("--agents", type=int, default=20)
p.add_argument("--heap-mb", type=int, default=96)
p.add_argument("--idle-s", type=float, default=60, help="idle time measured after all agents are reclaimed")
p.add_argument("--threshold-s", type=float, default=10, help="supervisor --idle-threshold")
p.add_argument("--rounds", type=int, default=3, help="resume measurements per agent and mode")
p.add_argument("--data", default=None)
a = p.parse_args()

if os.geteuid() != 0:
    sys.exit("bench-supervisor: needs root (page-out, cgroups, zswap settings)")

AM = os.path.abspath(a.agentmem)
D = a.dir
STATE = os.path.join(D, "state")
os.makedirs(STATE, exist_ok=True)
SETUP_STATE = os.path.join(D, "setup-state.json")
SWAP = os.path.join(D, "swapfile")
N = a.agents
names = [f"bench{i:02d}" for i in range(N)]
agents = {}          # name -> Popen
sup = None
applied = False


def am(*args, check=True):
    r = subprocess.run([AM, *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"agentmem {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


def ctl(req):
    """One request to the supervisor's control socket."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.path.join(STATE, "supervisor.sock"))
    s.sendall((json.dumps(req) + "\n").encode())
    r = json.loads(s.makefile().readline())
    s.close()
    if not r.get("ok"):
        raise RuntimeError(r.get("error"))
    return r


class AgentConn:
    def __init__(self, name):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(os.path.join(D, name + ".sock"))
        self.f = self.s.makefile()

    def ask(self, what):
        self.s.sendall((what + "\n").encode())
        return self.f.readline().strip()


def cleanup():
    global sup, applied
    for n, pr in agents.items():
        if pr.poll() is None:
            pr.kill()
    for pr in agents.values():
        try:
            pr.wait(timeout=10)
        except Exception:
            pass
    if sup is not None and sup.poll() is None:
        sup.send_signal(signal.SIGTERM)
        sup.wait(timeout=10)
    for n in names:
        for h in ("memory", "freezer"):
            for base in (f"/sys/fs/cgroup/{h}/agentmem/{n}", f"/sys/fs/cgroup/agentmem/{n}"):
                try:
                    os.rmdir(base)
                except OSError:
                    pass
    if applied:
        print(am("setup", "--revert", "--state-file", SETUP_STATE, check=False), end="")
        applied = False


def on_signal(sig, _):
    cleanup()
    sys.exit(1)


signal.signal(signal.SIGINT, on_signal)
signal.signal(signal.SIGTERM, on_signal)


def pss_of(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for l in f:
            if l.startswith("Pss:"):
                return int(l.split()[1]) * 1024
    return 0


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def pctl(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


results = {"agents": N, "heap_mb": a.heap_mb}
try:
    # 1. Agents, unmanaged: started under `agentmem run` with nothing else on.
    if os.path.exists(SETUP_STATE):
        sys.exit(f"{SETUP_STATE} exists: a previous run left a profile applied; run "
                 f"`agentmem setup --revert --state-file {SETUP_STATE}` first")
    env = dict(os.environ, AGENTMEM_STATE_DIR=STATE)
    t0 = time.time()
    for i, n in enumerate(names):
        cmd = [AM, "run", "--name", n, "--", os.path.abspath(a.test_agent), "--socket",
               os.path.join(D, n + ".sock"), "--index", str(i), "--heap-mb", str(a.heap_mb)]
        if a.data:
            cmd += ["--data", a.data]
        agents[n] = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    for n, pr in agents.items():
        if pr.stdout.readline().strip() != "ready":
            raise SystemExit(f"agent {n} did not start")
    print(f"{N} agents of ~{a.heap_mb} MiB started in {time.time() - t0:.1f} s")
    conns = {n: AgentConn(n) for n in names}
    digest0 = {n: conns[n].ask("verify") for n in names}
    render0 = {n: conns[n].ask("render") for n in names}
    unmanaged = {n: pss_of(agents[n].pid) for n in names}
    results["unmanaged_pss_mib_mean"] = statistics.mean(unmanaged.values()) / 2**20

    # 2. The default agent profile, then the supervisor.
    out = am("setup", "--apply", "--swap-file", SWAP, "--swap-size", f"{max(4, N * a.heap_mb * 2 // 1024 + 1)}GiB",
             "--state-file", SETUP_STATE)
    applied = True
    print(out, end="")
    sup = subprocess.Popen([AM, "supervise", "--state-dir", STATE, "--idle-threshold", str(a.threshold_s),
                            "--min-threshold", str(min(5.0, a.threshold_s))],
                           stderr=open(os.path.join(D, "supervise.log"), "w"))
    for _ in range(100):
        if os.path.exists(os.path.join(STATE, "supervisor.sock")):
            break
        time.sleep(0.1)
    time.sleep(0.5)

    # 3. Idle: wait until every agent is paged out, then measure.
    deadline = time.time() + a.threshold_s * 4 + 60
    while True:
        st = ctl({"op": "status"})["status"]
        if all(x["state"] == "reclaimed" for x in st["agents"]) and len(st["agents"]) == N:
            break
        if time.time() > deadline:
            raise SystemExit("agents were not all reclaimed in time: " + json.dumps([x["state"] for x in st["agents"]]))
        time.sleep(1)
    print(f"all {N} agents reclaimed; idling {a.idle_s:.0f} s")
    c0, w0 = cpu_ticks(sup.pid), time.time()
    time.sleep(a.idle_s)
    c1, w1 = cpu_ticks(sup.pid), time.time()
    hz = os.sysconf("SC_CLK_TCK")
    results["supervisor_cpu_percent_of_core"] = 100.0 * (c1 - c0) / hz / (w1 - w0)
    st = ctl({"op": "status"})["status"]
    t = st["totals"]
    share = t["zswap_pool_bytes"] / t["swap_used_bytes"] if t["swap_used_bytes"] else 0
    ratios = []
    for x in st["agents"]:
        eff = x["pss_bytes"] + x["swap_bytes"] * share
        ratios.append(eff / unmanaged[x["name"]])
    results["idle"] = {
        "pss_mib_mean": statistics.mean(x["pss_bytes"] for x in st["agents"]) / 2**20,
        "swap_mib_mean": statistics.mean(x["swap_bytes"] for x in st["agents"]) / 2**20,
        "zswap_pool_mib": t["zswap_pool_bytes"] / 2**20,
        "zswapped_mib": t["zswapped_bytes"] / 2**20,
        "swap_used_mib": t["swap_used_bytes"] / 2**20,
        "ksm_merged_pages": t["ksm_merged_pages"],
        "effective_over_unmanaged_mean": statistics.mean(ratios),
        "effective_over_unmanaged_max": max(ratios),
        "fleet_effective_over_unmanaged": t["effective_bytes"] / sum(unmanaged.values()),
    }

    # 4. Resume latency. Each sample: resume through the control socket, then
    # one `render` request; timed from the resume request to the answer.
    def sample(n, prefetch):
        t = time.perf_counter()
        ctl({"op": "resume", "name": n, "prefetch": prefetch})
        r = conns[n].ask("render")
        dt = (time.perf_counter() - t) * 1e3
        if r != render0[n]:
            raise SystemExit(f"{n}: wrong answer after resume: {r!r}, expected {render0[n]!r}")
        return dt

    lat = {"never_reclaimed": [], "prefetch": [], "no_prefetch": []}
    # Baseline: fully resident (everything brought back and touched), frozen without page-out.
    for n in names:
        ctl({"op": "resume", "name": n, "prefetch": "all"})
        conns[n].ask("verify")
    for _ in range(a.rounds):
        for n in names:
            ctl({"op": "pause", "name": n, "page_out": False})
            time.sleep(0.05)
            lat["never_reclaimed"].append(sample(n, "none"))
    # One resume per agent to learn its working set, then the measured rounds.
    for n in names:
        ctl({"op": "pause", "name": n})
        sample(n, "working_set")
    for _ in range(a.rounds):
        for n in names:
            ctl({"op": "pause", "name": n})
            time.sleep(0.05)
            lat["prefetch"].append(sample(n, "working_set"))
        for n in names:
            ctl({"op": "pause", "name": n})
            time.sleep(0.05)
            lat["no_prefetch"].append(sample(n, "none"))
    results["resume_ms"] = {k: {"p50": statistics.median(v), "p90": pctl(v, 0.9), "n": len(v)} for k, v in lat.items()}
    results["prefetch_over_never_reclaimed_p50"] = results["resume_ms"]["prefetch"]["p50"] / results["resume_ms"]["never_reclaimed"]["p50"]

    # 5. Every agent still holds exactly what it loaded.
    for n in names:
        ctl({"op": "resume", "name": n, "prefetch": "all"})
        d = conns[n].ask("verify")
        if d != digest0[n]:
            raise SystemExit(f"{n}: heap digest changed: {d} != {digest0[n]}")
    results["verified_agents"] = N
finally:
    cleanup()

i = results["idle"]
r = results["resume_ms"]
print(json.dumps(results, indent=1))
print(f"""
effective idle memory (PSS + zswap share) / unmanaged PSS: mean {100*i['effective_over_unmanaged_mean']:.1f}%, max {100*i['effective_over_unmanaged_max']:.1f}%  (target <= 15%)
  unmanaged PSS {results['unmanaged_pss_mib_mean']:.1f} MiB/agent; idle PSS {i['pss_mib_mean']:.1f} MiB, swap {i['swap_mib_mean']:.1f} MiB; zswap pool {i['zswap_pool_mib']:.0f} MiB holding {i['zswapped_mib']:.0f} MiB of {i['swap_used_mib']:.0f} MiB swapped
resume-to-first-response p50: never reclaimed {r['never_reclaimed']['p50']:.1f} ms, with prefetch {r['prefetch']['p50']:.1f} ms ({results['prefetch_over_never_reclaimed_p50']:.2f}x, target <= 1.5x), without prefetch {r['no_prefetch']['p50']:.1f} ms
supervisor CPU with {N} idle agents: {results['supervisor_cpu_percent_of_core']:.2f}% of one core (target <= 2%)
all {N} agents answered correctly after page-out and resume""")
os.makedirs(D, exist_ok=True)
with open(os.path.join(D, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
