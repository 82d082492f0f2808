#!/usr/bin/env python3
"""Page-out of real Claude Code instances: RAM freed, swap cache, disk, resume.

N instances run unmanaged and N under `agentmem run`, side by side, offline at
their idle prompt in tmux (pre-seeded ~/.claude.json, dummy API key, one HOME
each). For each mode the managed ones are paused (frozen and paged out) one by
one, then resumed; reported per mode: RAM freed per instance by MemAvailable
and by the cgroups' own usage, SwapCached, the zswap pool, disk used, the
`resume` call and resume-to-typed-word-on-screen times, and the supervisor's
CPU. Modes: `swapfile` (the default: cold pages to the swap file, swap cache
reclaimed), `swapfile-keep-cache` (the same without the reclaim: what the
supervisor did before), `zswap-lzo-rle` and `zswap-deflate` (everything into
a zswap pool of 20% of RAM).

Run by scripts/bench-supervisor-claude.sh (needs root; restores every setting
it changes, also on failure).
"""
import argparse, json, os, shutil, signal, statistics, subprocess, sys, time

p = argparse.ArgumentParser()
p.add_argument("--agentmem", required=True)
p.add_argument("--claude", required=True)
p.add_argument("--dir", required=True)
p.add_argument("--agents", type=int, default=10)
p.add_argument("--settle-s", type=float, default=30, help="idle time before measuring")
p.add_argument("--modes", default="swapfile,swapfile-keep-cache,zswap-lzo-rle,zswap-deflate")
p.add_argument("--swap-size", default="8GiB")
p.add_argument("--rounds", type=int, default=2,
               help="pause/resume rounds per mode; from the second on, resume prefetches the working set learned")
args = p.parse_args()

D = os.path.abspath(args.dir)
STATE = f"{D}/state"
TMUX = ["tmux", "-L", "agentmem-bench-claude"]
KEY = "sk-ant-api03-" + "dummy-offline-key-" * 4 + "AAAAAAAAAAAAAAAAAAAA"
ZS = "/sys/module/zswap/parameters"
M = 1 << 20
restore = []  # (path, value) written back on exit
sup = None


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def am(*a, check=True):
    return subprocess.run([args.agentmem, *a], env={**os.environ, "AGENTMEM_STATE_DIR": STATE},
                          check=check, capture_output=True, text=True)


def remember(path):
    """Writes the current value of `path` back on exit."""
    restore.append((path, open(path).read().strip()))


def cleanup():
    subprocess.run([*TMUX, "kill-server"], capture_output=True)
    if sup and sup.poll() is None:
        sup.send_signal(signal.SIGTERM)  # thaws paused agents
        try:
            sup.wait(10)
        except subprocess.TimeoutExpired:
            sup.kill()
    # Whatever outlived tmux: every process of the bench's homes.
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                env = open(f"/proc/{pid}/environ", "rb").read()
            except OSError:
                continue
            if f"HOME={D}/home/".encode() in env:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
    time.sleep(1)
    for path, v in reversed(restore):
        try:
            open(path, "w").write(v)
        except OSError as e:
            log(f"could not restore {path}: {e}")
    subprocess.run([args.agentmem, "setup", "--revert", "--state-file", f"{D}/setup-state.json",
                    "--state-dir", STATE], capture_output=True)


def on_signal(sig, _):
    cleanup()
    sys.exit(1)


signal.signal(signal.SIGINT, on_signal)
signal.signal(signal.SIGTERM, on_signal)


def meminfo():
    return {l.split(":")[0]: int(l.split()[1]) * 1024 for l in open("/proc/meminfo")}


def mem_available():
    """Median of 5 reads 100 ms apart (other processes move it too)."""
    v = []
    for _ in range(5):
        v.append(meminfo()["MemAvailable"])
        time.sleep(0.1)
    return statistics.median(v)


def tree(pid):
    out, todo = [], [pid]
    while todo:
        q = todo.pop()
        out.append(q)
        try:
            for t in os.listdir(f"/proc/{q}/task"):
                todo += [int(c) for c in open(f"/proc/{q}/task/{t}/children").read().split()]
        except OSError:
            pass
    return out


def pss(pids):
    s = 0
    for q in pids:
        try:
            for l in open(f"/proc/{q}/smaps_rollup"):
                if l.startswith("Pss:"):
                    s += int(l.split()[1]) * 1024
        except OSError:
            pass
    return s


def cpu_ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def pane(s):
    return subprocess.run([*TMUX, "capture-pane", "-p", "-t", s], capture_output=True, text=True).stdout


def start(name, managed):
    h = f"{D}/home/{name}"
    w = f"{h}/work"
    os.makedirs(w, exist_ok=True)
    json.dump({"hasCompletedOnboarding": True,
               "customApiKeyResponses": {"approved": [KEY[-20:]], "rejected": []},
               "projects": {w: {"hasTrustDialogAccepted": True}}, "autoUpdates": False},
              open(f"{h}/.claude.json", "w"))
    cmd = [args.claude]
    if managed:
        cmd = [args.agentmem, "run", "--name", name, "--", *cmd]
    env = f"HOME={h} ANTHROPIC_API_KEY={KEY} DISABLE_AUTOUPDATER=1 AGENTMEM_STATE_DIR={STATE}"
    subprocess.run([*TMUX, "new-session", "-d", "-s", name, "-x", "120", "-y", "40", "-c", w,
                    f"env {env} {' '.join(cmd)}"], check=True)


def pid_of(name):
    out = subprocess.run([*TMUX, "list-panes", "-t", name, "-F", "#{pane_pid}"], capture_output=True, text=True).stdout
    return int(out.split()[0])


def typed_word_ms(s, word):
    """Types `word` into session s; ms until it is on screen. Clears the input after."""
    t0 = time.perf_counter()
    subprocess.run([*TMUX, "send-keys", "-t", s, "-l", word])
    while word not in pane(s):
        if time.perf_counter() - t0 > 10:
            return None
        time.sleep(0.002)
    ms = (time.perf_counter() - t0) * 1e3
    subprocess.run([*TMUX, "send-keys", "-t", s, "C-u"])
    time.sleep(0.2)
    return ms


def pct(v, q):
    v = sorted(x for x in v if x is not None)
    return v[min(len(v) - 1, int(q * len(v)))] if v else None


def cg_mem(name):
    d = f"/sys/fs/cgroup/memory/agentmem/{name}"
    if os.path.isdir(d):
        st = {l.split()[0]: int(l.split()[1]) for l in open(f"{d}/memory.stat")}
        return int(open(f"{d}/memory.usage_in_bytes").read()), st.get("swapcached", 0)
    d = None
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]:
        if os.path.isdir(f"{root}/agentmem/{name}"):
            d = f"{root}/agentmem/{name}"
    if d is None:
        return 0, 0
    st = {l.split()[0]: int(l.split()[1]) for l in open(f"{d}/memory.stat")}
    return int(open(f"{d}/memory.current").read()), st.get("swapcached", 0)


def start_supervisor(extra):
    global sup
    if sup:
        sup.send_signal(signal.SIGTERM)
        sup.wait(30)
    sup = subprocess.Popen([args.agentmem, "supervise", "--state-dir", STATE, "--idle-threshold", "100000",
                            "--keep-frozen", *extra], stderr=open(f"{D}/supervise.log", "a"))
    for _ in range(100):
        if am("ps", check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise SystemExit("the supervisor did not start")


def main():
    shutil.rmtree(D, ignore_errors=True)
    os.makedirs(D)
    if meminfo()["SwapTotal"] > 0:
        raise SystemExit("another swap area is on (/proc/swaps): the bench needs its own alone, "
                         "to bring pages back between modes with swapoff")
    r = subprocess.run([args.agentmem, "setup", "--apply", "--state-file", f"{D}/setup-state.json",
                        "--swap-file", f"{D}/swapfile", "--swap-size", args.swap_size],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"setup --apply failed: {r.stdout}{r.stderr}")
    for f in ["enabled", "compressor", "max_pool_percent", "shrinker_enabled"]:
        remember(f"{ZS}/{f}")
    n = args.agents
    un = [f"bu{i}" for i in range(n)]
    mg = [f"bm{i}" for i in range(n)]
    start_supervisor([])
    for i in range(n):
        start(un[i], False)
        start(mg[i], True)
    t0 = time.time()
    for s in un + mg:
        while "? for shortcuts" not in pane(s):
            if time.time() - t0 > 120:
                raise SystemExit(f"{s} did not reach its prompt:\n{pane(s)}")
            time.sleep(0.5)
    log(f"{2 * n} instances at their prompt after {time.time() - t0:.0f} s; settling {args.settle_s:.0f} s")
    time.sleep(args.settle_s)
    upids = {s: tree(pid_of(s)) for s in un}
    unmanaged_pss = statistics.median(pss(v) for v in upids.values())
    never = [typed_word_ms(s, "hello") for s in un]
    results = {"agents": n, "uptime_start": open("/proc/loadavg").read().strip(),
               "unmanaged_pss_mib_p50": unmanaged_pss / M,
               "typed_word_never_reclaimed_ms": {"p50": pct(never, .5), "p90": pct(never, .9)},
               "modes": {}}
    log(f"unmanaged PSS p50 {unmanaged_pss / M:.1f} MiB; typed word p50 {pct(never, .5):.1f} ms")
    for mode in args.modes.split(","):
        extra, comp = [], None
        if mode == "swapfile-keep-cache":
            extra = ["--keep-swap-cache"]
        elif mode.startswith("zswap-"):
            extra, comp = ["--cold-in-zswap"], mode[len("zswap-"):]
        start_supervisor(extra)
        if comp:
            open(f"{ZS}/compressor", "w").write(comp)
            open(f"{ZS}/max_pool_percent", "w").write("20")
            open(f"{ZS}/shrinker_enabled", "w").write("N")
            open(f"{ZS}/enabled", "w").write("Y")
        for rnd in range(args.rounds):
            mpids = {s: tree(pid_of(s)) for s in mg}
            pss_before = sum(pss(v) for v in mpids.values())
            cg_before = [cg_mem(s) for s in mg]
            mi0 = meminfo()
            ma0 = mem_available()
            c0 = cpu_ticks(sup.pid)
            pause_ms = []
            for s in mg:
                t = time.perf_counter()
                am("pause", s)
                pause_ms.append((time.perf_counter() - t) * 1e3)
            time.sleep(2)
            ma1 = mem_available()
            mi1 = meminfo()
            cg_after = [cg_mem(s) for s in mg]
            pss_after = sum(pss(v) for v in mpids.values())
            ps = json.loads(am("ps", "--json").stdout)
            # Idle minute with N paused: the supervisor's own CPU.
            c1 = cpu_ticks(sup.pid)
            time.sleep(20)
            c2 = cpu_ticks(sup.pid)
            ps_cpu = []
            for _ in range(20):
                a = cpu_ticks(sup.pid)
                am("ps", "--json")
                ps_cpu.append((cpu_ticks(sup.pid) - a) * 10)  # ms at 100 ticks/s
            resume_ms, word_ms = [], []
            for s in mg:
                t = time.perf_counter()
                am("resume", s)
                resume_ms.append((time.perf_counter() - t) * 1e3)
                w = typed_word_ms(s, "hello")
                word_ms.append(None if w is None else resume_ms[-1] + w)
            disk0 = (mi0["SwapTotal"] - mi0["SwapFree"]) - mi0["Zswapped"]
            disk1 = (mi1["SwapTotal"] - mi1["SwapFree"]) - mi1["Zswapped"]
            m = {
                "ram_freed_per_instance_mib_by_memavailable": (ma1 - ma0) / n / M,
                "ram_freed_share_of_unmanaged_pss": (ma1 - ma0) / n / unmanaged_pss,
                "managed_pss_per_instance_mib_before_after": [pss_before / n / M, pss_after / n / M],
                "cgroup_usage_per_instance_mib_before_after": [sum(u for u, _ in cg_before) / n / M,
                                                              sum(u for u, _ in cg_after) / n / M],
                "cgroup_swapcached_per_instance_mib_after": sum(c for _, c in cg_after) / n / M,
                "machine_swapcached_mib_before_after": [mi0["SwapCached"] / M, mi1["SwapCached"] / M],
                "zswap_pool_mib_delta": (mi1["Zswap"] - mi0["Zswap"]) / M,
                "zswapped_mib_delta": (mi1["Zswapped"] - mi0["Zswapped"]) / M,
                "disk_per_instance_mib": disk1 / n / M,  # the bench's swap file is the only swap area
                "ps_ram_held_per_instance_mib": ps["totals"]["ram_bytes"] / n / M,
                "ps_disk_per_instance_mib": ps["totals"]["disk_bytes"] / n / M,
                "pause_ms": {"p50": pct(pause_ms, .5), "p90": pct(pause_ms, .9)},
                "resume_call_ms": {"p50": pct(resume_ms, .5), "p90": pct(resume_ms, .9)},
                "resume_to_typed_word_ms": {"p50": pct(word_ms, .5), "p90": pct(word_ms, .9)},
                "supervisor_cpu_s_for_all_pauses": (c1 - c0) / 100.0,
                "supervisor_cpu_idle_20s_pct_of_core": (c2 - c1) / 20.0,  # ticks/s = % at 100 Hz
                "ps_request_supervisor_cpu_ms_p50": pct(ps_cpu, .5),
                "ksm_pages_sharing": int(open("/sys/kernel/mm/ksm/pages_sharing").read()),
            }
            m["round"] = rnd + 1
            results["modes"][f"{mode}/round{rnd + 1}"] = m
            log(mode, rnd + 1, json.dumps(m))
            if rnd + 1 < args.rounds:
                time.sleep(3)  # past the supervisor's learning delay after a resume
        # All back in RAM before the next mode (swap entries of clean pages
        # would otherwise be dropped without a write the next time).
        for s in mg:
            am("pause", "--no-page-out", s)
            am("resume", "--prefetch", "all", s)
        subprocess.run(["swapoff", f"{D}/swapfile"], check=True)
        subprocess.run(["swapon", f"{D}/swapfile"], check=True)
    results["uptime_end"] = open("/proc/loadavg").read().strip()
    json.dump(results, open(f"{D}/results.json", "w"), indent=1)
    print(json.dumps(results, indent=1))


try:
    main()
finally:
    cleanup()
