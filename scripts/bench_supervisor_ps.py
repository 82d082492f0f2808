#!/usr/bin/env python3
"""Cost of `agentmem ps` and of idle supervision at N agents.

Starts N small test agents under `agentmem run` and `agentmem supervise`
(idle threshold out of reach, so no page-out: this measures the bookkeeping),
then reads the supervisor's CPU time (/proc/PID/stat) around 50 `ps --json`
requests and over 30 idle seconds. Needs root (cgroups). Cleans up on exit.

  python3 scripts/bench_supervisor_ps.py --agentmem target/release/agentmem \
      --test-agent target/release/agentmem-test-agent --agents 200
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, time

p = argparse.ArgumentParser()
p.add_argument("--agentmem", required=True)
p.add_argument("--test-agent", required=True)
p.add_argument("--agents", type=int, default=200)
p.add_argument("--requests", type=int, default=50)
args = p.parse_args()

d = tempfile.mkdtemp(prefix="agentmem-ps-bench-")
env = {**os.environ, "AGENTMEM_STATE_DIR": f"{d}/state"}
procs = []


def cpu_ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


sup = subprocess.Popen([args.agentmem, "supervise", "--idle-threshold", "100000"], env=env,
                       stderr=subprocess.DEVNULL)
try:
    time.sleep(1)
    for i in range(args.agents):
        procs.append(subprocess.Popen(
            [args.agentmem, "run", "--name", f"ps{i}", "--", args.test_agent,
             "--socket", f"{d}/a{i}.sock", "--heap-mb", "2", "--index", str(i)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    t0 = time.time()
    while True:
        st = json.loads(subprocess.run([args.agentmem, "ps", "--json"], env=env, capture_output=True,
                                       text=True, check=True).stdout)
        if len(st["agents"]) == args.agents and all(a["pss_age_s"] is not None for a in st["agents"]):
            break
        if time.time() - t0 > 300:
            sys.exit(f"only {len(st['agents'])} agents after 300 s")
        time.sleep(1)
    time.sleep(5)
    c0 = cpu_ticks(sup.pid)
    w0 = time.perf_counter()
    for _ in range(args.requests):
        subprocess.run([args.agentmem, "ps", "--json"], env=env, capture_output=True, check=True)
    wall = (time.perf_counter() - w0) / args.requests * 1e3
    c1 = cpu_ticks(sup.pid)
    time.sleep(30)
    c2 = cpu_ticks(sup.pid)
    # The 50 requests' window also holds ticks: subtract the idle rate.
    idle_per_s = (c2 - c1) / 30.0
    per_req = ((c1 - c0) - idle_per_s * wall * args.requests / 1e3) * 10 / args.requests
    print(json.dumps({
        "agents": args.agents,
        "ps_wall_ms_mean": round(wall, 2),
        "ps_supervisor_cpu_ms_per_request": round(per_req, 2),
        "supervisor_cpu_idle_pct_of_core": round(idle_per_s, 2),
        "loadavg": open("/proc/loadavg").read().strip(),
    }))
finally:
    for q in procs:
        q.kill()
    for q in procs:
        q.wait()
    sup.send_signal(signal.SIGTERM)
    sup.wait(30)
    shutil.rmtree(d, ignore_errors=True)
