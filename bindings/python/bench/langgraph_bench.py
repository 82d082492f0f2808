"""Replay real conversations through LangGraph with several checkpointers.

Each conversation of ``tau2_dev.jsonl.zst`` is a thread of a one-node
``StateGraph`` whose state is a ``messages`` channel (``add_messages``); each
message is one ``invoke``, as an agent loop does. When a conversation ends,
its thread is parked (``pause_thread``; the other checkpointers have no
such call). Then the latest checkpoint of every thread is read back
(``get_tuple``), which for agentmem resumes the parked thread.

Every checkpointer runs in its own fresh Python process (so resident figures
do not mix), one after the other, in one run of this script:

* ``InMemorySaver``, ``SqliteSaver`` (a file),
* ``AgentmemSaver()`` (embedded, RAM only), ``AgentmemSaver.open(dir)``
  (embedded, in a directory), ``AgentmemSaver.connect(socket)`` (agentmemd,
  started by this script with ``--ram-only``).

Every child runs with ``MALLOC_MMAP_THRESHOLD_=131072`` (glibc's initial
mmap threshold, fixed): with glibc's dynamic threshold, blocks freed by the
embedded store's chunk appends leave the heap fragmented, and the resident
growth of an embedded store is several times its data
(``--glibc-dynamic-mmap`` shows it).

Figures: resident growth of the process (RSS after ``gc.collect()`` and
``malloc_trim``, after the replay minus before; for agentmemd the daemon's
growth too), disk bytes (the SQLite file and its WAL; the agentmem
directory after close), per-step latency p50/p99 (one ``invoke``), resume
latency p50/p99 (``get_tuple`` of the latest checkpoint of a parked thread).

    target/py-venv/bin/python bindings/python/bench/langgraph_bench.py \\
        --conversations 100 800 [--agentmemd target/release/agentmemd]

Needs, besides the ``agentmem[langgraph]`` install (``scripts/test-bindings.sh
python`` makes one in ``target/py-venv``): ``pip install
langgraph-checkpoint-sqlite==3.1.2 zstandard``, and agentmemd built
(``cargo build --release -p agentmem-daemon``).
"""

import argparse
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

DATA = "/work/shared/data/conversations/tau2_dev.jsonl.zst"
SAVERS = ["InMemorySaver", "SqliteSaver", "AgentmemSaver()", "AgentmemSaver.open(dir)", "AgentmemSaver.connect(agentmemd)"]


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def dir_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def load_conversations(path: str, n: int) -> list[list[dict]]:
    import zstandard

    out = []
    with open(path, "rb") as f:
        text = zstandard.ZstdDecompressor().stream_reader(f).read().decode()
    for line in text.splitlines():
        if len(out) == n:
            break
        out.append(json.loads(line)["messages"])
    if len(out) < n:
        sys.exit(f"{path} has {len(out)} conversations, fewer than {n}")
    return out


def to_message(i: int, m: dict):
    """A LangChain message holding the whole record (its other fields in
    additional_kwargs), so every byte of the data goes through the saver."""
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    rest = {k: v for k, v in m.items() if k not in ("role", "content")}
    content = m.get("content") or ""
    if m["role"] == "assistant":
        return AIMessage(content=content, additional_kwargs=rest, id=f"m{i}")
    if m["role"] == "tool":
        return ToolMessage(content=content, tool_call_id=str(m.get("id") or f"call-{i}"), additional_kwargs=rest, id=f"m{i}")
    return HumanMessage(content=content, additional_kwargs=rest, id=f"m{i}")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def child(kind: str, n: int, workdir: str, socket: str | None, daemon_pid: int | None) -> dict:
    from typing import Annotated, TypedDict

    from langgraph.graph import StateGraph
    from langgraph.graph.message import add_messages

    import agentmem

    class State(TypedDict):
        messages: Annotated[list, add_messages]

    convs = load_conversations(DATA, n)
    msgs = [[to_message(i, m) for i, m in enumerate(c)] for c in convs]
    n_messages = sum(len(c) for c in convs)
    message_bytes = sum(len(json.dumps(m)) for c in convs for m in c)
    del convs

    disk_path = None
    if kind == "InMemorySaver":
        from langgraph.checkpoint.memory import InMemorySaver

        saver = InMemorySaver()
    elif kind == "SqliteSaver":
        import sqlite3

        from langgraph.checkpoint.sqlite import SqliteSaver

        disk_path = os.path.join(workdir, "checkpoints.sqlite")
        saver = SqliteSaver(sqlite3.connect(disk_path, check_same_thread=False))
    else:
        from agentmem.langgraph import AgentmemSaver

        if kind == "AgentmemSaver()":
            saver = AgentmemSaver()
        elif kind == "AgentmemSaver.open(dir)":
            disk_path = os.path.join(workdir, "agentmem")
            saver = AgentmemSaver.open(disk_path)
        else:
            saver = AgentmemSaver.connect(socket)

    builder = StateGraph(State)
    builder.add_node("agent", lambda state: {})
    builder.set_entry_point("agent")
    builder.set_finish_point("agent")
    graph = builder.compile(checkpointer=saver)
    # Warm up imports and code paths on a thread that is then deleted.
    for m in msgs[0][:3]:
        graph.invoke({"messages": [m]}, {"configurable": {"thread_id": "warmup"}})
    saver.delete_thread("warmup")

    gc.collect()
    agentmem.release_free_memory()
    rss0 = rss_bytes()
    d_rss0 = rss_bytes(daemon_pid) if daemon_pid else 0

    steps = []
    t_start = time.perf_counter()
    for c, conv in enumerate(msgs):
        cfg = {"configurable": {"thread_id": f"t{c}"}}
        for m in conv:
            t0 = time.perf_counter()
            graph.invoke({"messages": [m]}, cfg)
            steps.append(time.perf_counter() - t0)
        if hasattr(saver, "pause_thread"):
            saver.pause_thread(f"t{c}")
    replay_s = time.perf_counter() - t_start

    # Measured with the replayed messages still alive, as at rss0.
    gc.collect()
    agentmem.release_free_memory()
    rss1 = rss_bytes()
    d_rss1 = rss_bytes(daemon_pid) if daemon_pid else 0
    del msgs

    resumes = []
    for c in range(n):
        cfg = {"configurable": {"thread_id": f"t{c}"}}
        t0 = time.perf_counter()
        tup = saver.get_tuple(cfg)
        resumes.append(time.perf_counter() - t0)
        assert tup is not None and tup.checkpoint["channel_values"]["messages"], f"thread t{c} lost"
    # Check one thread's state came back whole.
    got = saver.get_tuple({"configurable": {"thread_id": f"t{n - 1}"}}).checkpoint["channel_values"]["messages"]
    want = load_conversations(DATA, n)[n - 1]
    assert [m.content for m in got] == [w.get("content") or "" for w in want], "the last thread's messages differ"

    if hasattr(saver, "close"):
        saver.close()
    elif kind == "SqliteSaver":
        saver.conn.close()
    disk = 0
    if disk_path and os.path.isdir(disk_path):
        disk = dir_bytes(disk_path)
    elif disk_path:
        disk = sum(os.stat(p).st_blocks * 512 for p in (disk_path, disk_path + "-wal") if os.path.exists(p))
    return {
        "saver": kind,
        "conversations": n,
        "messages": n_messages,
        "message_bytes": message_bytes,
        "rss_growth": rss1 - rss0,
        "daemon_rss_growth": d_rss1 - d_rss0,
        "disk": disk,
        "step_p50_ms": pct(steps, 50) * 1e3,
        "step_p99_ms": pct(steps, 99) * 1e3,
        "resume_p50_ms": pct(resumes, 50) * 1e3,
        "resume_p99_ms": pct(resumes, 99) * 1e3,
        "replay_s": replay_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conversations", type=int, nargs="+", default=[100, 800])
    ap.add_argument("--savers", nargs="+", default=SAVERS, choices=SAVERS)
    ap.add_argument("--agentmemd", default=os.path.join(os.path.dirname(__file__), "../../../target/release/agentmemd"))
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument(
        "--glibc-dynamic-mmap",
        action="store_true",
        help="leave glibc's dynamic mmap threshold on (by default every child runs with "
        "MALLOC_MMAP_THRESHOLD_=131072, glibc's initial value, fixed)",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--socket", help=argparse.SUPPRESS)
    ap.add_argument("--daemon-pid", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.conversations[0], a.workdir, a.socket, a.daemon_pid)))
        return

    results = []
    for n in a.conversations:
        for kind in a.savers:
            work = tempfile.mkdtemp(prefix="lgbench-")
            daemon = None
            cmd = [sys.executable, __file__, "--child", kind, "--conversations", str(n), "--workdir", work]
            try:
                if kind == "AgentmemSaver.connect(agentmemd)":
                    sock = os.path.join(work, "agentmemd.sock")
                    daemon = subprocess.Popen(
                        [a.agentmemd, "--ram-only", "--socket", sock],
                        stdout=subprocess.DEVNULL,
                        stderr=open(os.path.join(work, "agentmemd.log"), "w"),
                    )
                    for _ in range(100):
                        if os.path.exists(sock):
                            break
                        time.sleep(0.05)
                    cmd += ["--socket", sock, "--daemon-pid", str(daemon.pid)]
                env = dict(os.environ)
                if not a.glibc_dynamic_mmap:
                    env["MALLOC_MMAP_THRESHOLD_"] = "131072"
                out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=3600, env=env)
                r = json.loads(out.stdout.strip().splitlines()[-1])
            except subprocess.CalledProcessError as e:
                sys.exit(f"{kind} with {n} conversations failed:\n{e.stderr}")
            finally:
                if daemon is not None:
                    daemon.send_signal(signal.SIGTERM)
                    daemon.wait(timeout=30)
                shutil.rmtree(work, ignore_errors=True)
            results.append(r)
            print(
                f"{n:>4} conv {r['messages']:>6} msgs {r['message_bytes'] / 1e6:6.2f} MB | {kind:34s} "
                f"resident +{r['rss_growth'] / 1e6:7.2f} MB"
                + (f" (daemon +{r['daemon_rss_growth'] / 1e6:.2f} MB)" if daemon else "")
                + f" | disk {r['disk'] / 1e6:7.2f} MB | step p50 {r['step_p50_ms']:5.2f} p99 {r['step_p99_ms']:6.2f} ms"
                f" | resume p50 {r['resume_p50_ms']:5.2f} p99 {r['resume_p99_ms']:5.2f} ms",
                flush=True,
            )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
