"""100 agents in one Python process sharing one system prompt and one tool
set, each with its own real conversation (tau2-bench, from the data
directory).

    python examples/hundred_agents.py            # agentmem
    python examples/hundred_agents.py --plain    # plain Python strings
    ... [--agents N] [--data DIR]   (default: the repository's data/sample)
        [--socket PATH]               (agentmem mode through agentmemd at PATH)

Prints the store's stats and the growth of the process's resident memory
while building the agents (the input corpus is loaded in both modes), also
after handing freed memory back to the OS (agentmem.release_free_memory).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
from pathlib import Path

from agentmem import AgentMemory, release_free_memory

HERE = Path(__file__).resolve().parent


def load(data: Path, rel: str) -> str:
    """Read a data file: plain in the full set, zstd-compressed in data/sample."""
    p = data / rel
    if p.exists():
        return p.read_text(encoding="utf-8")
    return subprocess.run(
        ["zstd", "-dc", str(p) + ".zst"], check=True, capture_output=True
    ).stdout.decode("utf-8")


def rss(trim: bool = False) -> int:
    gc.collect()
    if trim:
        release_free_memory()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plain", action="store_true", help="hold plain strings instead")
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--socket", help="use agentmemd at this socket instead of an embedded store")
    ap.add_argument("--data", type=Path, default=HERE / "../../../data/sample")
    args = ap.parse_args()

    prompt_text = json.loads(load(args.data, "prompts/system_prompt_variants.json"))[0]["text"]
    tools_text = json.dumps(json.loads(load(args.data, "prompts/tool_declarations.json"))["gemini-3"])
    conv_file = next(
        f.name.removesuffix(".zst")
        for f in sorted((args.data / "conversations").iterdir())
        if f.name.endswith((".jsonl", ".jsonl.zst"))
    )
    lines = [l for l in load(args.data, f"conversations/{conv_file}").splitlines() if l]
    if len(lines) < args.agents:
        raise SystemExit(f"{args.data} holds {len(lines)} conversations; asked for {args.agents}")

    # What a runtime receives for each agent: its own copy of the prompt and
    # tools text (read or fetched per agent), and its messages.
    def fresh(s: str) -> str:
        return s.encode("utf-8").decode("utf-8")

    before = rss(trim=True)
    agents: list = []
    messages = 0
    for i in range(args.agents):
        conv = json.loads(lines[i])["messages"]
        if args.plain:
            a = {"system_prompt": fresh(prompt_text), "tools": json.loads(fresh(tools_text)), "messages": []}
            for m in conv:
                a["messages"].append({"role": m["role"], "content": m.get("content") or "", "tool_calls": m.get("tool_calls")})
        else:
            a = AgentMemory(fresh(prompt_text), json.loads(fresh(tools_text)), socket_path=args.socket)
            for m in conv:
                a.conversation.append({"role": m["role"], "content": m.get("content") or "", "tool_calls": m.get("tool_calls")})
            # Its turn is over: it waits for the person, as most agents do
            # most of the time, so the store compresses what only it holds.
            a.set_state("idle")
        agents.append(a)
        messages += len(conv)
    after = rss()
    # What is left once the allocator returns freed memory (the store's
    # dictionary training and parse buffers) to the OS.
    after_trim = rss(trim=True)

    mode = "plain" if args.plain else "agentmem-daemon" if args.socket else "agentmem"
    out = {"mode": mode, "agents": args.agents, "messages": messages,
           "rss_growth_bytes": after - before, "rss_growth_after_trim_bytes": after_trim - before}
    if not args.plain:
        last = agents[-1]
        last.set_state("active")
        ctx = last.conversation.get_context()
        if ctx[0]["content"] != prompt_text or len(ctx) != len(json.loads(lines[-1 if len(lines) == args.agents else args.agents - 1])["messages"]) + 1:
            raise SystemExit("context read back differs from what was appended")
        out["stats"] = agents[0].get_stats().as_dict()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
