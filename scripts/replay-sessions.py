#!/usr/bin/env python3
"""Session driver and working-agent benchmark for `agentmem replay-model`.

Starts the replay model server on loopback, then N unmodified agent CLIs
(Claude Code, Gemini CLI or Codex), each in its own tmux session with its own
temporary HOME and scratch repository, pointed at the server the documented
way. Each agent replays one recorded conversation: the driver types the
person's turns into the terminal, waits until the turn has finished on screen
(the CLI's busy marker gone and the screen settled), thinks for a sampled
time, and types the next one. Recorded per turn: time from Enter to the
answer finished on screen. Measured for the run: turns per minute, turn
latency p50/p99, RAM actually held (MemAvailable drop, PSS of every process
of the agents, found by their HOME), OOM kills, protocol errors (server side
and on screen), replay-server CPU and handling time.

Bounded in time (--deadline); always removes its tmux server, every process
started under the temporary HOMEs (detached daemons included), the server
and the temporary directory. See docs/replay-model.md.

  scripts/replay-sessions.py --cli claude -n 20 --turns 10 --out /tmp/run.json
"""

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NPM_PACKAGES = {
    "claude": "@anthropic-ai/claude-code@2.1.197",
    "gemini": "@google/gemini-cli@0.61.0",
    "codex": "@openai/codex@0.171.0",
}
# Shown while a turn is in flight (model answering or a tool running).
BUSY = {
    "claude": re.compile(r"esc to interrupt", re.I),
    "gemini": re.compile(r"esc to cancel", re.I),
    "codex": re.compile(r"esc to interrupt", re.I),
}
# Shown when the CLI is at its prompt after start-up.
READY = {
    "claude": re.compile(r"for shortcuts"),
    "gemini": re.compile(r"Type your message"),
    "codex": re.compile(r"(send|shortcuts|context left)", re.I),
}
ERROR = {
    "claude": re.compile(r"API Error"),
    "gemini": re.compile(r"(\[API Error|Error when talking)"),
    "codex": re.compile(r"(stream error|unexpected status|error sending request)", re.I),
}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def find_cli(name, cache):
    path = shutil.which(name)
    if path:
        return path
    prefix = os.path.join(cache, "npm")
    binp = os.path.join(prefix, "node_modules", ".bin", name)
    if not os.path.exists(binp):
        log(f"installing {NPM_PACKAGES[name]} into {prefix}")
        run(["npm", "install", "--prefix", prefix, "--no-fund", "--no-audit",
             "--allow-scripts=@anthropic-ai/claude-code", NPM_PACKAGES[name]])
    return binp


def ensure_tools():
    if not shutil.which("tmux"):
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "-qq", "tmux"])


def agentmem_binary(args):
    if args.agentmem:
        return args.agentmem
    path = os.path.join(REPO, "target", "release", "agentmem")
    if not os.path.exists(path):
        run(["cargo", "build", "--release", "-p", "agentmem-cli"], cwd=REPO)
    return path


def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":")
            out[k] = int(v.split()[0]) * 1024
    return out


def vmstat(key):
    with open("/proc/vmstat") as f:
        for line in f:
            k, v = line.split()
            if k == key:
                return int(v)
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids_under(root):
    """Every process whose HOME lies under root: the agents, their tools and
    any daemon they detached (those inherit the environment)."""
    found = []
    needle = f"HOME={root}".encode()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env:
            found.append(int(d))
    return found


def pss_bytes(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def percentile(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


class Tmux:
    def __init__(self, socket):
        self.socket = socket

    def __call__(self, *a, check=True):
        return subprocess.run(["tmux", "-L", self.socket, *a], check=check,
                              capture_output=True, text=True)

    def screen(self, target):
        r = self("capture-pane", "-p", "-t", target, check=False)
        return r.stdout

    def history(self, target):
        return self("capture-pane", "-p", "-S", "-5000", "-t", target, check=False).stdout


def write_configs(cli, home, work, url):
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(work, "README.md"), "w") as f:
        f.write("# Scratch repository\n\nWritten by scripts/replay-sessions.py; the replayed "
                "model reads, lists, greps and writes files here.\n")
    os.makedirs(os.path.join(work, "src"), exist_ok=True)
    with open(os.path.join(work, "src", "main.py"), "w") as f:
        f.write("def main():\n    print('hello')\n")
    env = {"HOME": home, "PATH": os.environ.get("PATH", ""), "TERM": "xterm-256color",
           "LANG": "C.UTF-8"}
    if cli == "claude":
        with open(os.path.join(home, ".claude.json"), "w") as f:
            json.dump({"hasCompletedOnboarding": True, "theme": "dark", "numStartups": 5,
                       "autoUpdates": False,
                       "customApiKeyResponses": {"approved": ["dummy"], "rejected": []},
                       "projects": {work: {"hasTrustDialogAccepted": True, "allowedTools": [],
                                           "hasCompletedProjectOnboarding": True}}}, f)
        env.update(ANTHROPIC_BASE_URL=url, ANTHROPIC_API_KEY="dummy", DISABLE_AUTOUPDATER="1",
                   CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1")
        args = ["--allowedTools", "Bash", "Read", "Write", "Glob", "Edit"]
    elif cli == "gemini":
        os.makedirs(os.path.join(home, ".gemini"), exist_ok=True)
        with open(os.path.join(home, ".gemini", "settings.json"), "w") as f:
            json.dump({"security": {"auth": {"selectedType": "gemini-api-key"},
                                    "folderTrust": {"enabled": False}},
                       "general": {"enableAutoUpdate": False,
                                   "enableAutoUpdateNotification": False},
                       "privacy": {"usageStatisticsEnabled": False},
                       "telemetry": {"enabled": False}}, f)
        env.update(GEMINI_API_KEY="dummy", GOOGLE_GEMINI_BASE_URL=url)
        args = ["--yolo"]
    else:
        os.makedirs(os.path.join(home, ".codex"), exist_ok=True)
        with open(os.path.join(home, ".codex", "auth.json"), "w") as f:
            json.dump({"auth_mode": "apikey", "OPENAI_API_KEY": "dummy"}, f)
        with open(os.path.join(home, ".codex", "config.toml"), "w") as f:
            f.write(f'''model = "gpt-5"
model_provider = "localsrv"
check_for_update_on_startup = false
approval_policy = "never"
sandbox_mode = "danger-full-access"
[analytics]
enabled = false
[model_providers.localsrv]
name = "localsrv"
base_url = "{url}/v1"
env_key = "LOCAL_API_KEY"
wire_api = "responses"
[projects."{work}"]
trust_level = "trusted"
''')
        env.update(LOCAL_API_KEY="dummy")
        args = []
    return env, args


class Agent(threading.Thread):
    def __init__(self, i, bench, trajectory, rng):
        super().__init__(daemon=True)
        self.i, self.b, self.traj, self.rng = i, bench, trajectory, rng
        self.target = f"a{i}"
        self.records = []
        self.error = None

    def wait_ready(self, deadline):
        """The prompt marker is on screen and the screen has been still for
        2 s: Gemini CLI shows its prompt before it takes input, and a paste
        that arrives too early loses its first characters."""
        ready = READY[self.b.args.cli]
        last, since = None, time.time()
        while time.time() < deadline:
            s = self.b.tmux.screen(self.target)
            if s != last:
                last, since = s, time.time()
            elif ready.search(s) and time.time() - since >= 2.0:
                return True
            time.sleep(0.5)
        return False

    def paste(self, text):
        """Pastes `text` (bracketed, so "?" or "!" are not shortcuts) and
        checks that its start shows in the input; retries after clearing."""
        # Compared without whitespace: the input box wraps long lines.
        probe = "".join(text.split())[:16]
        for attempt in range(3):
            self.b.tmux("set-buffer", "-b", f"b{self.i}", "--", text)
            self.b.tmux("paste-buffer", "-p", "-d", "-b", f"b{self.i}", "-t", self.target)
            for _ in range(20):
                time.sleep(0.25)
                screen = "".join(self.b.tmux.screen(self.target).split())
                # Codex shows a long paste as "[Pasted Content N chars]".
                if probe in screen or "[Pasted" in screen:
                    return True
            if attempt == 2:
                break  # leave the last paste in: Enter may still take it
            # Clear whatever got in (and leave a shell mode a stray "!" opened).
            self.b.tmux("send-keys", "-t", self.target, "Escape")
            self.b.tmux("send-keys", "-t", self.target, "C-u")
            time.sleep(1.0)
        return False

    def progress(self, key, turn):
        """The server's session progress `key` has reached `turn`."""
        s = self.b.sessions().get(str(self.traj["index"]))
        return s is not None and s[key] is not None and s[key] >= turn

    def submit(self, turn):
        """Presses Enter until the server sees this turn's first request: a
        loaded CLI may drop an Enter that arrives while it still handles the
        paste. Returns the time of the Enter that was taken and the presses."""
        presses = 0
        while presses < 4:
            t0 = time.time()
            self.b.tmux("send-keys", "-t", self.target, "Enter")
            presses += 1
            wait_until = t0 + self.b.args.submit_wait
            while time.time() < wait_until:
                if self.progress("last_request_turn", turn):
                    return t0, presses
                time.sleep(self.b.args.poll)
        return None, presses

    def wait_turn(self, turn, limit):
        """Returns the time the turn was seen finished on screen, or None on
        timeout. Finished: the server sent the turn's final answer, the CLI's
        busy marker is gone and the screen has not changed for --settle s."""
        busy = BUSY[self.b.args.cli]
        poll = self.b.args.poll
        settled_since = None
        last = prev_time = None
        answered = False
        while time.time() < limit:
            s = self.b.tmux.screen(self.target)
            now = time.time()
            answered = answered or self.progress("last_final_turn", turn)
            if answered and not busy.search(s) and s == last:
                if settled_since is None:
                    settled_since = prev_time
                elif now - settled_since >= self.b.args.settle:
                    return settled_since
            else:
                settled_since = None
            last, prev_time = s, now
            time.sleep(poll)
        return None

    def run(self):
        a = self.b.args
        try:
            if not self.wait_ready(time.time() + a.start_timeout):
                self.error = "CLI did not reach its prompt"
                return
            turns = self.traj["turns"][: a.turns]
            for k, text in enumerate(turns):
                if time.time() > self.b.stop_typing_at:
                    break
                text = " ".join(text.split())
                if not self.paste(text):
                    log(f"agent {self.i}: turn {k}: the pasted text never showed")
                time.sleep(0.3)  # let the CLI take the text before Enter
                t0, presses = self.submit(k)
                if t0 is None:
                    self.records.append({"agent": self.i, "turn": k, "typed_at": time.time(),
                                         "enter_presses": presses, "latency_s": None})
                    log(f"agent {self.i}: turn {k} never reached the server")
                    break
                done = self.wait_turn(k, min(t0 + a.turn_timeout, self.b.hard_deadline))
                self.records.append({"agent": self.i, "turn": k, "typed_at": t0,
                                     "enter_presses": presses,
                                     "latency_s": None if done is None else done - t0})
                if done is None:
                    log(f"agent {self.i}: turn {k} did not finish")
                    break
                think = min(a.think_max, self.rng.lognormvariate(math.log(a.think_median),
                                                                 a.think_sigma))
                time.sleep(think)
        except Exception as e:  # the report says which agent failed and why
            self.error = repr(e)


class Bench:
    def __init__(self, args):
        self.args = args
        self.root = tempfile.mkdtemp(prefix=f"replay-bench-{args.cli}-")
        self.tmux = Tmux(f"replaybench{os.getpid()}")
        self.server = None
        self.samples = []
        self.sessions_lock = threading.Lock()
        self.sessions_at = 0.0
        self.sessions_cache = {}

    def start_server(self):
        a = self.args
        cmd = [agentmem_binary(a), "replay-model", "--listen", f"127.0.0.1:{a.port}",
               "--seed", str(a.seed), "--latency-scale", str(a.latency_scale)]
        if a.data:
            cmd += ["--data", a.data]
        cmd += a.server_arg
        self.server_log = open(os.path.join(self.root, "server.log"), "w")
        self.server = subprocess.Popen(cmd, stdout=self.server_log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{a.port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(self.url + "/", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("replay server did not start; see " + self.server_log.name)

    def get(self, path):
        return json.loads(urllib.request.urlopen(self.url + path, timeout=10).read())

    def sessions(self):
        """Shared by every agent's poll: at most one request per --poll."""
        with self.sessions_lock:
            if time.time() - self.sessions_at >= self.args.poll / 2:
                self.sessions_cache = self.get("/replay/sessions")
                self.sessions_at = time.time()
            return self.sessions_cache

    def sample_memory(self, stop):
        while not stop.wait(self.args.mem_interval):
            pids = pids_under(self.root)
            self.samples.append({"t": time.time(), "mem_available": meminfo()["MemAvailable"],
                                 "pss": sum(pss_bytes(p) for p in pids), "processes": len(pids)})

    def cleanup(self):
        self.tmux("kill-server", check=False)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = pids_under(self.root)
            for p in pids:
                try:
                    os.kill(p, sig)
                except OSError:
                    pass
            if pids and sig == signal.SIGTERM:
                time.sleep(2)
        if self.server:
            self.server.terminate()
            try:
                self.server.wait(5)
            except subprocess.TimeoutExpired:
                self.server.kill()
        left = pids_under(self.root)
        if not self.args.keep:
            shutil.rmtree(self.root, ignore_errors=True)
        return left

    def run(self):
        a = self.args
        ensure_tools()
        cli = find_cli(a.cli, os.path.expanduser("~/.cache/agentmem-bench"))
        self.start_server()
        # Only trajectories that typing their first message selects (several
        # recorded runs share a first message), so each agent's progress can
        # be followed on the server.
        trajectories = [t for t in self.get(f"/replay/trajectories?min_turns={a.min_turns}")
                        if t["canonical"]]
        if len(trajectories) < a.n:
            log(f"only {len(trajectories)} distinct trajectories with >= {a.min_turns} turns: "
                "some agents share one (their turn ends are then told apart by screen only)")
        if not trajectories:
            raise RuntimeError(f"no trajectory with >= {a.min_turns} person turns in the data")
        rng = random.Random(a.seed)
        rng.shuffle(trajectories)
        base_mem = meminfo()["MemAvailable"]
        oom0 = vmstat("oom_kill")
        agents = []
        for i in range(a.n):
            home = os.path.join(self.root, f"agent{i}")
            work = os.path.join(home, "work")
            os.makedirs(home)
            env, extra = write_configs(a.cli, home, work, self.url)
            envs = [f"{k}={v}" for k, v in env.items()]
            new = ["new-session", "-d", "-s", f"a{i}", "-x", "160", "-y", "50", "-c", work,
                   "env", "-i", *envs, cli, *extra]
            if self.tmux(*new, check=False).returncode != 0:
                time.sleep(1)  # a tmux server still starting or stopping: once more
                self.tmux(*new)
            agents.append(Agent(i, self, trajectories[i % len(trajectories)],
                                random.Random(a.seed * 1000 + i)))
            time.sleep(a.stagger)
        self.hard_deadline = time.time() + a.deadline
        self.stop_typing_at = self.hard_deadline - a.turn_timeout / 2
        stop = threading.Event()
        sampler = threading.Thread(target=self.sample_memory, args=(stop,), daemon=True)
        sampler.start()
        cpu0, t_start = cpu_seconds(self.server.pid), time.time()
        for ag in agents:
            ag.start()
        for ag in agents:
            ag.join(max(0.1, self.hard_deadline - time.time() + 5))
        t_end = time.time()
        cpu1 = cpu_seconds(self.server.pid)
        active_stats = self.get("/replay/stats")
        # Idle phase: every agent at its prompt; the server should cost nothing.
        idle = None
        if a.idle_seconds > 0:
            c0 = cpu_seconds(self.server.pid)
            time.sleep(a.idle_seconds)
            idle = {"seconds": a.idle_seconds,
                    "server_cpu_percent": 100 * (cpu_seconds(self.server.pid) - c0) / a.idle_seconds}
        stop.set()
        pids = pids_under(self.root)
        end_pss = sum(pss_bytes(p) for p in pids)
        screen_errors = sum(len(ERROR[a.cli].findall(self.tmux.history(f"a{i}")))
                            for i in range(a.n))
        stats = self.get("/replay/stats")
        for i in range(a.n):
            with open(os.path.join(self.root, f"agent{i}.screen"), "w") as f:
                f.write(self.tmux.history(f"a{i}"))
        records = [r for ag in agents for r in ag.records]
        done = [r["latency_s"] for r in records if r["latency_s"] is not None]
        per_agent = [sum(1 for r in ag.records if r["latency_s"] is not None) for ag in agents]
        minutes = (t_end - t_start) / 60
        min_avail = min([s["mem_available"] for s in self.samples] + [meminfo()["MemAvailable"]])
        summary = {
            "cli": a.cli, "n": a.n, "turns_target": a.turns, "latency_scale": a.latency_scale,
            "think_median_s": a.think_median,
            "turns_completed": len(done), "turns_timed_out": len(records) - len(done),
            "agents_with_all_turns": sum(1 for ag, c in zip(agents, per_agent)
                                         if c >= min(a.turns, len(ag.traj["turns"]))),
            "min_turns_per_agent": min(per_agent) if per_agent else 0,
            "agent_errors": [ag.error for ag in agents if ag.error],
            "active_minutes": round(minutes, 2),
            "turns_per_minute": round(len(done) / minutes, 2) if minutes > 0 else None,
            "turn_latency_s": {"p50": percentile(done, 0.5), "p99": percentile(done, 0.99),
                               "max": max(done) if done else None},
            "protocol_errors": {"server_bad_requests": stats["bad_requests"],
                                "server_not_found": stats["not_found"],
                                "on_screen": screen_errors},
            "server": {"exchanges": stats["exchanges"], "exhausted": stats["exhausted"],
                       "tool_calls": stats["tool_calls"],
                       "handling_us": stats["handling_us"],
                       "handling_cpu_us": stats["handling_cpu_us"],
                       "cpu_percent_active": round(100 * (cpu1 - cpu0) / max(1e-9, t_end - t_start), 3),
                       "idle": idle, "exchanges_during_turns": active_stats["exchanges"]},
            "memory": {"mem_available_drop_peak_mib": round((base_mem - min_avail) / 2**20, 1),
                       "pss_end_mib": round(end_pss / 2**20, 1),
                       "pss_per_agent_mib": round(end_pss / 2**20 / a.n, 1),
                       "pss_peak_mib": round(max([s["pss"] for s in self.samples] + [end_pss]) / 2**20, 1),
                       "processes": len(pids)},
            "oom_kills": vmstat("oom_kill") - oom0,
        }
        return summary, records


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cli", choices=["claude", "gemini", "codex"], default="claude")
    p.add_argument("-n", type=int, default=1, help="concurrent agents")
    p.add_argument("--turns", type=int, default=10, help="person turns per agent (at most)")
    p.add_argument("--min-turns", type=int, default=None,
                   help="only replay trajectories with this many person turns (default: --turns)")
    p.add_argument("--data", default=None, help="replay-model --data (default: shared data if present)")
    p.add_argument("--port", type=int, default=18890)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--latency-scale", type=float, default=1.0)
    p.add_argument("--think-median", type=float, default=5.0, help="seconds the person thinks, median")
    p.add_argument("--think-sigma", type=float, default=0.8)
    p.add_argument("--think-max", type=float, default=120.0)
    p.add_argument("--poll", type=float, default=0.25, help="screen poll interval, s")
    p.add_argument("--settle", type=float, default=0.5, help="screen unchanged this long = turn done")
    p.add_argument("--turn-timeout", type=float, default=180.0)
    p.add_argument("--submit-wait", type=float, default=15.0,
                   help="seconds to wait for the server to see a turn before pressing Enter again")
    p.add_argument("--start-timeout", type=float, default=120.0)
    p.add_argument("--stagger", type=float, default=0.5, help="seconds between agent starts")
    p.add_argument("--deadline", type=float, default=1200.0, help="hard bound of the driving phase, s")
    p.add_argument("--idle-seconds", type=float, default=0.0,
                   help="after the turns, measure server CPU with every agent idle this long")
    p.add_argument("--mem-interval", type=float, default=10.0)
    p.add_argument("--agentmem", default=None, help="agentmem binary (default: target/release, built if absent)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--server-arg", action="append", default=[],
                   help="extra replay-model argument, e.g. --server-arg=--dump-requests=/tmp/d")
    p.add_argument("--out", default=None, help="write summary and per-turn records as JSON")
    a = p.parse_args()
    if a.min_turns is None:
        a.min_turns = a.turns
    if a.data is None:
        # The project's shared data set sits beside the checkout (or beside
        # the worktrees' folder); without it the bundled sample is used.
        for shared in (os.path.join(REPO, "..", "shared", "data"),
                       os.path.join(REPO, "..", "..", "shared", "data")):
            if os.path.isdir(shared):
                a.data = os.path.abspath(shared)
                break
    bench = Bench(a)

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    left = []
    try:
        summary, records = bench.run()
    finally:
        left = bench.cleanup()
        if left:
            log(f"WARNING: {len(left)} processes survived cleanup: {left}")
    summary["processes_left_after_cleanup"] = len(left)
    print(json.dumps(summary, indent=2))
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"summary": summary, "turns": records}, f, indent=1)


if __name__ == "__main__":
    main()
