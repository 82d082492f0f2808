"""Recovery of agentmemd's data directory on the shared data set.

Loads every tau2 conversation of /work/shared/data (or --data) into a fresh
agentmemd on a temporary data directory — one agent per conversation, with a
system prompt variant and the tool declarations — stops it with SIGTERM,
starts it again on the same directory, reads everything back and compares it
byte for byte, and prints the daemon's own checkpoint and recovery lines.

    scripts/test-bindings.sh python   # builds the binding into target/py-venv
    cargo build --release -p agentmem-daemon
    target/py-venv/bin/python scripts/bench_recovery.py [--data DIR]
"""

import argparse
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agentmem import Store


def read_jsonl_zst(path):
    out = subprocess.run(["zstd", "-dc", str(path)], check=True, capture_output=True).stdout
    return [json.loads(line) for line in io.BytesIO(out).read().splitlines() if line.strip()]


def start(binary, sock, data, log):
    p = subprocess.Popen(
        [binary, "--socket", sock, "--dir", data, "--grace-secs", "600", "--log", "info"],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "NO_COLOR": "1"},
    )
    deadline = time.time() + 30
    while not os.path.exists(sock):
        if p.poll() is not None or time.time() > deadline:
            sys.exit(f"agentmemd did not start; see {log.name}")
        time.sleep(0.02)
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--binary", default="target/release/agentmemd")
    a = ap.parse_args()
    data = Path(a.data)
    convs = read_jsonl_zst(data / "conversations/tau2_dev.jsonl.zst")
    prompts = [p["text"] for p in json.loads((data / "prompts/system_prompt_variants.json").read_text())]
    tools = (data / "prompts/tool_declarations.json").read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        sock, store_dir = f"{tmp}/s.sock", f"{tmp}/data"
        logf = open(f"{tmp}/agentmemd.log", "w+")
        d = start(a.binary, sock, store_dir, logf)
        expect = {}
        with Store.connect(sock) as s:
            for i, c in enumerate(convs):
                ag = s.register_agent(f"conv-{i}", "bench")
                ids = [
                    s.put(ag, "system_prompt", prompts[i % len(prompts)]),
                    s.put(ag, "tool_defs", tools),
                ]
                conv = s.create_conversation(ag)
                msgs = [json.dumps(m, ensure_ascii=False).encode() for m in c["messages"]]
                for m in msgs:
                    s.append(conv, m)
                plain = prompts[i % len(prompts)].encode() + tools + b"".join(msgs)
                expect[f"conv-{i}"] = (ids, conv, hashlib.sha256(plain).hexdigest())
        n_msgs = sum(len(c["messages"]) for c in convs)
        d.send_signal(signal.SIGTERM)
        assert d.wait(120) == 0
        d = start(a.binary, sock, store_dir, logf)
        ok = 0
        with Store.connect(sock) as s:
            for name, (ids, conv, digest) in expect.items():
                ag = s.register_agent(name, "bench")
                got = b"".join(s.get(ag, x) for x in ids) + b"".join(s.read_messages(conv))
                ok += hashlib.sha256(got).hexdigest() == digest
        d.send_signal(signal.SIGTERM)
        d.wait(120)
        logf.seek(0)
        log = logf.read()
        size = sum(f.stat().st_size for f in Path(store_dir).rglob("*") if f.is_file())
        print(f"{len(convs)} agents, {n_msgs} messages; data directory {size / 1e6:.1f} MB")
        for line in log.splitlines():
            if re.search(r"checkpoint of|recovered|new store", line):
                print(line.strip())
        print(f"read back byte-exact: {ok}/{len(expect)} agents")
        sys.exit(0 if ok == len(expect) else 1)


if __name__ == "__main__":
    main()
