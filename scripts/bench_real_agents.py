#!/usr/bin/env python3
"""Driver of scripts/bench-real-agents.sh (see there and docs/real-agents.md).

Real, unmodified agent CLIs (Claude Code, Gemini CLI, Codex) at their idle
prompt in tmux, offline, N unmanaged and N under `agentmem run` +
`agentmem supervise` side by side. Python only for timing and bookkeeping:
every action on agents goes through `agentmem` or tmux, as a user would.

Subcommands:
  bench    the side-by-side bench (default)
  density  keep adding Claude Code instances, 90% paused, until MemAvailable
           falls under --floor-gib or --cap is reached
  record   record /proc CPU and I/O of one idle instance per CLI, then while
           typing into it (fixture for the idle detector's unit tests)

Every process started is in a cgroup this script made (unmanaged:
memory/agentmem-rb/NAME; managed: agentmem/NAME), and on exit, also on
failure or Ctrl-C, every process of those cgroups is thawed and killed
(Codex and Gemini CLI leave detached daemons that outlive their terminal),
the cgroups removed, the supervisor stopped and `agentmem setup --revert` run.
"""

import argparse, json, os, random, shutil, signal, socket, statistics, string, subprocess, sys, time

CLIS = ("claude", "gemini", "codex")
PKG = {"claude": "@anthropic-ai/claude-code", "gemini": "@google/gemini-cli", "codex": "@openai/codex"}
# What each CLI shows once its prompt takes input.
ALLOW_SCRIPTS = ("@anthropic-ai/claude-code", "@github/keytar", "node-pty")
READY = {"claude": "? for shortcuts", "gemini": "Type your message", "codex": "for shortcuts"}
CLAUDE_KEY = "sk-ant-api03-dummy-key-for-offline-bench-000000000000"
DEAD = "http://127.0.0.1:9"  # discard port on loopback: any model request fails at once
TMUX = "agentmem-rb"
UCG = "agentmem-rb"  # parent of unmanaged instances' cgroups (v1 memory hierarchy)
HZ = os.sysconf("SC_CLK_TCK")


def sh(*cmd, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed: {r.stderr.strip()}")
    return r.stdout


# ---------------------------------------------------------------- install

def install(prefix):
    """The three CLIs from npm into PREFIX (reused when already there)."""
    bins = {c: os.path.join(prefix, "node_modules", ".bin", c) for c in CLIS}
    if all(os.path.exists(b) for b in bins.values()):
        return bins
    os.makedirs(prefix, exist_ok=True)
    print(f"installing {', '.join(PKG.values())} into {prefix}", flush=True)
    # npm 11 skips dependencies' install scripts unless the project's
    # package.json allows them (`--allow-scripts` is for global installs only).
    pj = os.path.join(prefix, "package.json")
    if not os.path.exists(pj):
        with open(pj, "w") as f:
            json.dump({"name": "agentmem-real-agents", "private": True,
                       "allowScripts": {k: True for k in ALLOW_SCRIPTS}}, f)
    sh("npm", "install", "--no-audit", "--no-fund", "--prefix", prefix, *PKG.values())
    return bins


def versions(bins):
    return {c: sh(b, "--version", check=False).strip().splitlines()[-1:] for c, b in bins.items()}


# ---------------------------------------------------------------- instances

def seed(cli, home, work):
    """Pre-seeded config so the CLI reaches its prompt offline with a dummy key
    and no question asked (docs/real-agents.md says why each entry is there)."""
    os.makedirs(home, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    if cli == "claude":
        os.makedirs(os.path.join(home, ".claude"), exist_ok=True)
        with open(os.path.join(home, ".claude.json"), "w") as f:
            json.dump({"hasCompletedOnboarding": True, "theme": "dark", "numStartups": 5, "autoUpdates": False,
                       "customApiKeyResponses": {"approved": [CLAUDE_KEY[-20:]], "rejected": []},
                       "projects": {work: {"hasTrustDialogAccepted": True, "hasCompletedProjectOnboarding": True,
                                           "allowedTools": []}}}, f)
        p = os.path.join(home, ".claude", "settings.json")
        if not os.path.exists(p):
            with open(p, "w") as f:
                json.dump({"env": {"DISABLE_AUTOUPDATER": "1"}}, f)
    elif cli == "gemini":
        os.makedirs(os.path.join(home, ".gemini"), exist_ok=True)
        p = os.path.join(home, ".gemini", "settings.json")
        if not os.path.exists(p):
            with open(p, "w") as f:
                json.dump({"security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
                           "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
                           "privacy": {"usageStatisticsEnabled": False}, "telemetry": {"enabled": False}}, f)
    elif cli == "codex":
        d = os.path.join(home, ".codex")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "auth.json"), "w") as f:
            json.dump({"auth_mode": "apikey", "OPENAI_API_KEY": "dummy"}, f)
        p = os.path.join(d, "config.toml")
        if not os.path.exists(p):
            with open(p, "w") as f:
                f.write('check_for_update_on_startup = false\napproval_policy = "on-request"\n'
                        'sandbox_mode = "workspace-write"\n\n[analytics]\nenabled = false\n\n'
                        f'[projects."{work}"]\ntrust_level = "trusted"\n')


def env_for(cli, home, bins):
    path = os.path.dirname(bins[cli]) + ":/usr/local/bin:/usr/bin:/bin"
    e = {"HOME": home, "PATH": path, "TERM": "xterm-256color", "LANG": "C.UTF-8"}
    if cli == "claude":
        e.update(ANTHROPIC_API_KEY=CLAUDE_KEY, ANTHROPIC_BASE_URL=DEAD, DISABLE_AUTOUPDATER="1",
                 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1")
    elif cli == "gemini":
        e.update(GEMINI_API_KEY="dummy", GOOGLE_GEMINI_BASE_URL=DEAD)
    elif cli == "codex":
        e.update(OPENAI_BASE_URL=DEAD + "/v1")
    return e


class Inst:
    """One CLI instance in its own tmux session and cgroup."""

    def __init__(self, cli, name, managed):
        self.cli, self.name, self.managed = cli, name, managed
        self.home = os.path.join(D, "home", name)
        self.work = os.path.join(D, "work", name)
        self.started = None

    def cgroups(self):
        if self.managed:
            return [f"/sys/fs/cgroup/{h}/agentmem/{self.name}" for h in ("memory", "freezer")] + \
                   [f"/sys/fs/cgroup/agentmem/{self.name}"]
        return [f"/sys/fs/cgroup/memory/{UCG}/{self.name}", f"/sys/fs/cgroup/{UCG}/{self.name}"]

    def memcg(self):
        for c in self.cgroups():
            if os.path.exists(os.path.join(c, "cgroup.procs")) and ("/memory/" in c or os.path.exists(c + "/memory.current")):
                return c
        return None

    def procs(self):
        ps = set()
        for c in self.cgroups():
            try:
                ps |= {int(x) for x in open(os.path.join(c, "cgroup.procs")).read().split()}
            except OSError:
                pass
        return sorted(ps)

    def start(self):
        seed(self.cli, self.home, self.work)
        e = env_for(self.cli, self.home, BINS)
        envs = " ".join(f"{k}='{v}'" for k, v in e.items())
        if self.managed:
            inner = f"exec env -i {envs} {AM} run --name {self.name} --state-dir {STATE} -- {BINS[self.cli]}"
        else:
            cg = f"/sys/fs/cgroup/memory/{UCG}/{self.name}"
            os.makedirs(cg, exist_ok=True)
            inner = f"echo $$ > {cg}/cgroup.procs && exec env -i {envs} {BINS[self.cli]}"
        sh("tmux", "-L", TMUX, "new-session", "-d", "-s", self.name, "-x", "120", "-y", "40", "-c", self.work,
           "sh", "-c", inner)
        self.started = time.time()

    def screen(self):
        return sh("tmux", "-L", TMUX, "capture-pane", "-p", "-t", self.name, check=False)

    def wait_ready(self, timeout=60):
        while time.time() - self.started < timeout:
            s = self.screen()
            if READY[self.cli] in s:
                return time.time() - self.started
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not reach its prompt in {timeout} s:\n{self.screen()}")

    def typed_word_ms(self, timeout=10):
        """Types a fresh word and returns ms until the pane shows it; erases it after."""
        w = "zq" + "".join(random.choice(string.ascii_lowercase) for _ in range(6))
        t0 = time.perf_counter()
        sh("tmux", "-L", TMUX, "send-keys", "-t", self.name, "-l", w)
        ms = None
        while time.perf_counter() - t0 < timeout:
            if w in self.screen():
                ms = (time.perf_counter() - t0) * 1e3
                break
            time.sleep(0.002)
        sh("tmux", "-L", TMUX, "send-keys", "-t", self.name, *(["BSpace"] * len(w)))
        t1 = time.time()
        while w in self.screen() and time.time() - t1 < 5:
            time.sleep(0.02)
        return ms

    def cg_usage(self):
        """The cgroup's own memory: usage (page cache and swap cache included) and its swap."""
        c = self.memcg()
        if not c:
            return {}
        st = {}
        try:
            for l in open(os.path.join(c, "memory.stat")):
                k, v = l.split()
                st[k] = int(v)
        except OSError:
            pass
        try:
            usage = int(open(os.path.join(c, "memory.usage_in_bytes")).read())
        except OSError:
            usage = int(open(os.path.join(c, "memory.current")).read())
        return {"usage": usage, "rss": st.get("total_rss", st.get("anon", 0)),
                "cache": st.get("total_cache", st.get("file", 0)), "swap": st.get("total_swap", 0)}

    def pss(self):
        t = 0
        for p in self.procs():
            try:
                for l in open(f"/proc/{p}/smaps_rollup"):
                    if l.startswith("Pss:"):
                        t += int(l.split()[1]) * 1024
            except OSError:
                pass
        return t

    def kill(self):
        for c in self.cgroups():
            fz = os.path.join(c, "freezer.state")
            if os.path.exists(fz):
                try:
                    open(fz, "w").write("THAWED")
                except OSError:
                    pass
            if os.path.exists(os.path.join(c, "cgroup.freeze")):
                try:
                    open(os.path.join(c, "cgroup.freeze"), "w").write("0")
                except OSError:
                    pass
        for _ in range(50):
            ps = self.procs()
            if not ps:
                break
            for p in ps:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.1)
        for c in self.cgroups():
            try:
                os.rmdir(c)
            except OSError:
                pass


# ---------------------------------------------------------------- machine

def meminfo():
    m = {}
    for l in open("/proc/meminfo"):
        k, v = l.split(":")
        m[k] = int(v.split()[0]) * 1024
    return m


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def pctl(v, q):
    v = sorted(x for x in v if x is not None)
    return v[min(len(v) - 1, int(q * len(v)))] if v else None


def ctl(req):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(120)
    s.connect(os.path.join(STATE, "supervisor.sock"))
    s.sendall((json.dumps(req) + "\n").encode())
    r = json.loads(s.makefile().readline())
    s.close()
    if not r.get("ok"):
        raise RuntimeError(r.get("error"))
    return r


def states():
    return {x["name"]: x["state"] for x in ctl({"op": "status"})["status"]["agents"]}


# ---------------------------------------------------------------- lifecycle

INSTS = []
SUP = None
APPLIED = False


def start_supervisor(extra=()):
    global SUP
    SUP = subprocess.Popen([AM, "supervise", "--state-dir", STATE, *extra],
                           stderr=open(os.path.join(D, "supervise.log"), "a"))
    for _ in range(100):
        if os.path.exists(os.path.join(STATE, "supervisor.sock")):
            break
        time.sleep(0.1)
    time.sleep(0.5)


def apply_profile(swap_gib):
    global APPLIED
    if NO_SETUP:
        print("--no-setup: using the machine's swap and zswap as they are:", flush=True)
        if EXTRA_SWAP_GIB:
            add_swap(EXTRA_SWAP_GIB)
        print(open("/proc/swaps").read() + "zswap enabled: " +
              open("/sys/module/zswap/parameters/enabled").read(), end="", flush=True)
        return
    setup_state = os.path.join(D, "setup-state.json")
    if os.path.exists(setup_state):
        raise SystemExit(f"{setup_state} exists: a previous run left a profile applied; run "
                         f"`{AM} setup --revert --state-file {setup_state}` first")
    print(sh(AM, "setup", "--apply", "--swap-file", os.path.join(D, "swapfile"), "--swap-size", f"{swap_gib}GiB",
             "--state-file", setup_state), end="", flush=True)
    APPLIED = True


EXTRA_SWAP = []


def add_swap(gib):
    """A swap file of our own (swapped off and removed at cleanup)."""
    path = os.path.join(D, "extra-swapfile")
    sh("fallocate", "-l", f"{gib}G", path)
    os.chmod(path, 0o600)
    sh("mkswap", path)
    sh("swapon", path)
    EXTRA_SWAP.append(path)


def cleanup():
    global SUP, APPLIED
    if SUP is not None and SUP.poll() is None:
        SUP.send_signal(signal.SIGTERM)
        try:
            SUP.wait(timeout=15)
        except subprocess.TimeoutExpired:
            SUP.kill()
    SUP = None
    for i in INSTS:
        i.kill()
    subprocess.run(["tmux", "-L", TMUX, "kill-server"], capture_output=True)
    for i in INSTS:
        i.kill()  # whatever the terminal's end started on its way out
    # The supervisor stopped before its agents: remove their hooks from the
    # instances' configurations and their records, as it would have.
    if any(i.managed for i in INSTS):
        sh(AM, "unhook", "--all", "--state-dir", STATE, check=False)
        for sub in ("agents", "learned"):
            for i in INSTS:
                try:
                    os.remove(os.path.join(STATE, sub, i.name + ".json"))
                except OSError:
                    pass
    # Codex copies its 315 MB binary into each $HOME: 425 MB per instance.
    if not KEEP_HOMES:
        for i in INSTS:
            shutil.rmtree(i.home, ignore_errors=True)
            shutil.rmtree(i.work, ignore_errors=True)
    for c in (f"/sys/fs/cgroup/memory/{UCG}", f"/sys/fs/cgroup/{UCG}"):
        try:
            os.rmdir(c)
        except OSError:
            pass
    for path in EXTRA_SWAP:
        sh("swapoff", path, check=False)
        try:
            os.remove(path)
        except OSError:
            pass
    EXTRA_SWAP.clear()
    if APPLIED:
        print(sh(AM, "setup", "--revert", "--state-file", os.path.join(D, "setup-state.json"), check=False),
              end="", flush=True)
        APPLIED = False


def on_signal(sig, _):
    cleanup()
    sys.exit(1)


# ---------------------------------------------------------------- record

def proc_sample(pids):
    """Summed over PIDS, apart for processes with a controlling terminal
    (`tty`: the TUI) and without (`bg`: detached daemons): CPU ticks
    (/proc/PID/stat, all threads), rchar, wchar, syscr, syscw."""
    s = {f"{g}_{k}": 0 for g in ("tty", "bg") for k in ("cpu_ticks", "rchar", "wchar", "syscr", "syscw")}
    # The terminal's atime: the kernel moves it when the terminal is read
    # (input), at most once per 8-second window.
    s["tty_atime"] = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            g = "tty" if int(rest[4]) != 0 else "bg"
            io = {}
            for l in open(f"/proc/{p}/io"):
                k, v = l.split(":")
                io[k] = int(v)
            s[f"{g}_cpu_ticks"] += int(rest[11]) + int(rest[12])
            if g == "tty":
                try:
                    s["tty_atime"] = max(s["tty_atime"], int(os.stat(f"/proc/{p}/fd/0").st_atime))
                except OSError:
                    pass
            for k in ("rchar", "wchar", "syscr", "syscw"):
                s[f"{g}_{k}"] += io[k]
        except (OSError, ValueError, IndexError, KeyError):
            pass
    return s


def record(a):
    """One instance per CLI: idle for --idle-s, then a word typed every --type-every s."""
    insts = [Inst(c, f"rec-{c}", managed=False) for c in a.clis]
    INSTS.extend(insts)
    for i in insts:
        i.start()
    for i in insts:
        print(f"{i.name}: prompt after {i.wait_ready():.1f} s", flush=True)
    time.sleep(a.settle_s)
    series = {i.cli: [] for i in insts}
    prev = {i.cli: proc_sample(i.procs()) for i in insts}
    t_end_idle = time.time() + a.idle_s
    t_end = t_end_idle + a.typing_s
    next_key = t_end_idle
    tick = time.time()
    while time.time() < t_end:
        tick += 1.0
        typed = []
        now = time.time()
        if now >= next_key and now < t_end:
            for i in insts:
                w = "zq" + "".join(random.choice(string.ascii_lowercase) for _ in range(5))
                sh("tmux", "-L", TMUX, "send-keys", "-t", i.name, "-l", w)
                typed.append(i.cli)
            next_key += a.type_every
        time.sleep(max(0, tick - time.time()))
        for i in insts:
            cur = proc_sample(i.procs())
            d = {k: cur[k] - prev[i.cli][k] for k in cur}
            d["tty_input"] = int(cur["tty_atime"] != prev[i.cli]["tty_atime"])
            d["key"] = i.cli in typed
            d["phase"] = "idle" if now < t_end_idle else "typing"
            series[i.cli].append(d)
            prev[i.cli] = cur
    with open(a.out, "w") as f:
        json.dump({"tick_s": 1.0, "clis": versions({c: BINS[c] for c in a.clis}), "series": series}, f)
        f.write("\n")
    print(f"wrote {a.out}", flush=True)


# ---------------------------------------------------------------- bench

def bench(a):
    res = {"n": a.n, "clis": versions({c: BINS[c] for c in a.clis}), "per_cli": {}}
    apply_profile(a.swap_gib)
    un = {c: [Inst(c, f"rb-u-{c}{k}", False) for k in range(a.n)] for c in a.clis}
    mg = {c: [Inst(c, f"rb-m-{c}{k}", True) for k in range(a.n)] for c in a.clis}
    for c in a.clis:
        for i in un[c] + mg[c]:
            INSTS.append(i)
            i.start()
            time.sleep(0.3)
    for i in INSTS:
        i.wait_ready(a.ready_s)
    print(f"{len(INSTS)} instances at their prompt; settling {a.settle_s:.0f} s", flush=True)
    time.sleep(a.settle_s)
    m0 = meminfo()
    before = {i.name: {"pss": i.pss(), **i.cg_usage()} for i in INSTS}
    start_supervisor(a.supervise_arg)
    t_sup = time.time()
    c0 = cpu_ticks(SUP.pid)
    # 1. Recognised idle and reclaimed within --reclaim-s?
    reclaimed_at = {}
    while time.time() - t_sup < a.reclaim_s:
        for n, s in states().items():
            if s in ("reclaimed", "paused") and n not in reclaimed_at:
                reclaimed_at[n] = time.time() - t_sup
        if len(reclaimed_at) == sum(len(v) for v in mg.values()):
            break
        time.sleep(2)
    time.sleep(a.after_reclaim_s)
    m1 = meminfo()
    after = {i.name: {"pss": i.pss(), **i.cg_usage()} for i in INSTS}
    # 2. Idle period, nobody asking the supervisor anything (a `ps` costs it
    # CPU): false wake-ups from its log ("NAME: woke after ..."), its CPU.
    log0 = os.path.getsize(os.path.join(D, "supervise.log"))
    w0, cw0 = time.time(), cpu_ticks(SUP.pid)
    time.sleep(a.idle_s)
    cpu_pct = 100.0 * (cpu_ticks(SUP.pid) - cw0) / HZ / (time.time() - w0)
    with open(os.path.join(D, "supervise.log")) as f:
        f.seek(log0)
        idle_log = f.read().splitlines()
    woke_log = [l for l in idle_log if ": woke after" in l]
    wakes = {}
    for l in woke_log:
        n = l.split("agentmem supervise: ", 1)[-1].split(":", 1)[0]
        wakes[n] = wakes.get(n, 0) + 1
    pageouts_idle = sum(1 for l in idle_log if "paged out" in l)
    m2 = meminfo()
    # 3. Typing: typed word on screen, reclaimed vs never reclaimed; does typing wake it?
    for c in a.clis:
        r = {"ready_s": None}
        rec_ms, un_ms, woke = [], [], 0
        for rnd in range(a.rounds):
            for i in un[c]:
                un_ms.append(i.typed_word_ms())
            for i in mg[c]:
                st0 = states().get(i.name)
                ms = i.typed_word_ms()
                if st0 in ("reclaimed",):
                    rec_ms.append(ms)
                t1 = time.time()
                while time.time() - t1 < 3:
                    if states().get(i.name) == "active":
                        woke += 1
                        break
                    time.sleep(0.1)
            if rnd + 1 < a.rounds:
                # Let them be reclaimed again before the next round.
                t1 = time.time()
                while time.time() - t1 < a.reclaim_s and any(
                        states().get(i.name) != "reclaimed" for i in mg[c]):
                    time.sleep(1)
        mb = [before[i.name] for i in mg[c]]
        ma = [after[i.name] for i in mg[c]]
        ub = [before[i.name] for i in un[c]]
        r.update({
            "unmanaged_pss_mib": statistics.mean(x["pss"] for x in ub) / 2**20,
            "unmanaged_cg_usage_mib": statistics.mean(x.get("usage", 0) for x in ub) / 2**20,
            "managed_cg_usage_before_mib": statistics.mean(x.get("usage", 0) for x in mb) / 2**20,
            "managed_cg_usage_after_mib": statistics.mean(x.get("usage", 0) for x in ma) / 2**20,
            "managed_cg_swap_after_mib": statistics.mean(x.get("swap", 0) for x in ma) / 2**20,
            "managed_pss_after_mib": statistics.mean(x["pss"] for x in ma) / 2**20,
            "reclaimed_within_s": [reclaimed_at.get(i.name) for i in mg[c]],
            "false_wakeups": sum(wakes.get(i.name, 0) for i in mg[c]),
            "typing_woke": f"{woke}/{a.rounds * len(mg[c])}",
            "typed_word_ms_never_reclaimed": {"p50": pctl(un_ms, .5), "p90": pctl(un_ms, .9), "n": len(un_ms)},
            "typed_word_ms_reclaimed": {"p50": pctl(rec_ms, .5), "p90": pctl(rec_ms, .9), "n": len(rec_ms)},
        })
        res["per_cli"][c] = r
    res["machine"] = {
        "mem_available_gain_mib": (m1["MemAvailable"] - m0["MemAvailable"]) / 2**20,
        "swap_cached_mib": [m0["SwapCached"] / 2**20, m1["SwapCached"] / 2**20, m2["SwapCached"] / 2**20],
        "swap_used_mib": (m1["SwapTotal"] - m1["SwapFree"]) / 2**20,
        "zswap_pool_mib": m1.get("Zswap", 0) / 2**20,
        "zswapped_mib": m1.get("Zswapped", 0) / 2**20,
        "supervisor_cpu_percent_of_core_idle": cpu_pct,
        "supervisor_cpu_percent_of_core_reclaim": 100.0 * (cw0 - c0) / HZ / max(1e-3, w0 - t_sup),
        "idle_s": a.idle_s,
        "woke_log": woke_log[:50],
        "page_outs_during_idle": pageouts_idle,
        "loadavg": open("/proc/loadavg").read().strip(),
    }
    return res


def density(a):
    """Adds Claude Code instances under the supervisor, pausing 9 of 10,
    until MemAvailable < --floor-gib, --cap, or --time-s."""
    apply_profile(a.swap_gib)
    start_supervisor(a.supervise_arg)
    t0 = time.time()
    stop = None
    k = 0
    while True:
        m = meminfo()
        if m["MemAvailable"] < a.floor_gib * 2**30:
            stop = f"MemAvailable {m['MemAvailable'] / 2**30:.2f} GiB < {a.floor_gib} GiB"
            break
        if k >= a.cap:
            stop = f"cap of {a.cap} instances"
            break
        if time.time() - t0 > a.time_s:
            stop = f"time limit of {a.time_s} s"
            break
        batch = [Inst("claude", f"rb-d{k + j:04d}", True) for j in range(a.batch)]
        for i in batch:
            INSTS.append(i)
            i.start()
        for i in batch:
            try:
                i.wait_ready(a.ready_s)
            except RuntimeError as e:
                stop = str(e).splitlines()[0]
                break
        if stop:
            break
        time.sleep(2)
        for j, i in enumerate(batch):
            if (k + j) % 10 != 9:
                try:
                    ctl({"op": "pause", "name": i.name})
                except RuntimeError as e:
                    stop = f"pause of {i.name} failed: {e}"
                    break
        if stop:
            break
        k += a.batch
        m = meminfo()
        print(f"{k} instances, MemAvailable {m['MemAvailable'] / 2**30:.2f} GiB, "
              f"swap used {(m['SwapTotal'] - m['SwapFree']) / 2**30:.2f} GiB, SwapCached "
              f"{m['SwapCached'] / 2**20:.0f} MiB, {time.time() - t0:.0f} s", flush=True)
    st = ctl({"op": "status"})["status"]
    paused = [x["name"] for x in st["agents"] if x["state"] == "paused"]
    sample = random.sample(paused, min(20, len(paused)))
    ms, res_ms = [], []
    by = {i.name: i for i in INSTS}
    for n in sample:
        # `resume` (thaw + prefetch), then a typed word on screen: the wait a
        # person sees after an orchestrator resumes a paused agent.
        t = time.perf_counter()
        r = ctl({"op": "resume", "name": n, "prefetch": "working_set"})
        call_ms = (time.perf_counter() - t) * 1e3
        res_ms.append(r.get("resume_ms"))
        w = by[n].typed_word_ms()
        ms.append(None if w is None else call_ms + w)
    m = meminfo()
    alive = sum(1 for i in INSTS if i.procs())
    return {"instances": k, "alive": alive, "paused": len(paused), "stopped_by": stop,
            "mem_available_gib": m["MemAvailable"] / 2**30,
            "swap_used_gib": (m["SwapTotal"] - m["SwapFree"]) / 2**30,
            "swap_cached_gib": m["SwapCached"] / 2**30, "zswap_pool_gib": m.get("Zswap", 0) / 2**30,
            "resume_then_typed_word_ms": {"p50": pctl(ms, .5), "p90": pctl(ms, .9), "n": len(ms)},
            "resume_call_ms": {"p50": pctl(res_ms, .5), "p90": pctl(res_ms, .9)},
            "seconds": time.time() - t0, "loadavg": open("/proc/loadavg").read().strip()}


# ---------------------------------------------------------------- main

p = argparse.ArgumentParser()
p.add_argument("mode", nargs="?", default="bench", choices=["bench", "density", "record"])
p.add_argument("--agentmem", required=True)
p.add_argument("--dir", required=True)
p.add_argument("--prefix", default=None, help="npm prefix for the CLIs (default DIR/npm)")
p.add_argument("--clis", default=",".join(CLIS))
p.add_argument("--n", type=int, default=5, help="instances per CLI, unmanaged and managed each")
p.add_argument("--settle-s", type=float, default=15)
p.add_argument("--ready-s", type=float, default=90)
p.add_argument("--reclaim-s", type=float, default=90, help="how long to wait for the idle page-out")
p.add_argument("--after-reclaim-s", type=float, default=10)
p.add_argument("--idle-s", type=float, default=600, help="idle period counted for false wake-ups")
p.add_argument("--rounds", type=int, default=2)
p.add_argument("--swap-gib", type=int, default=8)
p.add_argument("--extra-swap-gib", type=int, default=0,
               help="with --no-setup: add a swap file of this size for the run (removed after)")
p.add_argument("--no-setup", action="store_true",
               help="leave swap/zswap/KSM as they are (e.g. another run applied the profile)")
p.add_argument("--supervise-arg", action="append", default=[], help="extra `agentmem supervise` argument")
p.add_argument("--cap", type=int, default=400)
p.add_argument("--batch", type=int, default=10)
p.add_argument("--floor-gib", type=float, default=2.0)
p.add_argument("--time-s", type=float, default=1800)
p.add_argument("--typing-s", type=float, default=60)
p.add_argument("--type-every", type=float, default=6)
p.add_argument("--out", default=None)
p.add_argument("--keep-homes", action="store_true", help="keep each instance's $HOME and work dir")
a = p.parse_args()
a.clis = a.clis.split(",")
# One tmux server and cgroup parent per mode, so a `record` can run beside a `bench`.
TMUX = UCG = f"agentmem-rb-{a.mode}"

if os.geteuid() != 0:
    sys.exit("bench-real-agents: needs root (cgroups, page-out, swap and zswap settings)")
D = os.path.abspath(a.dir)
NO_SETUP = a.no_setup
EXTRA_SWAP_GIB = a.extra_swap_gib
KEEP_HOMES = a.keep_homes
STATE = os.path.join(D, "state")
AM = os.path.abspath(a.agentmem)
os.makedirs(STATE, exist_ok=True)
BINS = install(a.prefix or os.path.join(D, "npm"))
signal.signal(signal.SIGINT, on_signal)
signal.signal(signal.SIGTERM, on_signal)
os.makedirs(f"/sys/fs/cgroup/memory/{UCG}", exist_ok=True)
t_start = time.time()
try:
    if a.mode == "record":
        a.out = a.out or os.path.join(D, "idle-typing.json")
        record(a)
        out = None
    elif a.mode == "bench":
        out = bench(a)
    else:
        out = density(a)
    if out is not None:
        out["uptime_before"] = None
        out["wall_s"] = time.time() - t_start
        path = a.out or os.path.join(D, f"{a.mode}.json")
        with open(path, "w") as f:
            json.dump(out, f, indent=1)
        print(json.dumps(out, indent=1))
        print(f"results in {path}")
finally:
    cleanup()
