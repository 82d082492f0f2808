"""Latency of one get of a 1 KiB message through the Python binding
(Store.get -> bytes), measured like crates/agentmem-capi/examples/get_latency.rs:
30 batches of 20,000 gets (15 of 2,000 through the daemon), one JSON line. Optional argument: a socket path to
measure through agentmemd instead of the embedded store."""

import json
import os
import sys
import time

from agentmem import Store

body = "I'd like to change my flight to the one leaving two hours later, same fare class please. "
text = '{"role":"user","content":"'
while len(text) < 1022:
    text += body[len(text) % len(body)]
text = (text + '"}')[:1024]

socket = sys.argv[1] if len(sys.argv) > 1 else None
store = Store.connect(socket) if socket else Store.embedded()
agent = store.register_agent(f"bench-python-{os.getpid()}")
uid = store.put(agent, "conversation", text.encode())
BATCH, BATCHES = (2_000, 15) if socket else (20_000, 30)
get = store.get


def run() -> None:
    for _ in range(BATCH):
        if len(get(agent, uid)) != 1024:
            raise SystemExit("wrong size")


run()
per = []
for _ in range(BATCHES):
    t = time.perf_counter_ns()
    run()
    per.append((time.perf_counter_ns() - t) / BATCH)
per.sort()
print(json.dumps({"path": "python-daemon" if socket else "python-embedded",
                  "ns_per_get_p50": round(per[BATCHES // 2]), "ns_per_get_min": round(per[0])}))
store.close()
