#!/usr/bin/env python3
"""Reference miss counts from libCacheSim (PyPI `libcachesim==0.3.5`) on the
shared classic traces, for the agentmem simulator's validation test.

Usage (from the repository root, with `../shared/data/traces` beside it):

    python3 -m venv /tmp/lcs-venv
    /tmp/lcs-venv/bin/pip install libcachesim==0.3.5
    /tmp/lcs-venv/bin/python scripts/libcachesim_reference.py \
        > crates/agentmem-sim/tests/data/libcachesim_reference.json

Each trace is decoded exactly as agentmem's readers decode it (LIRS: one
integer per line, blank lines and `*` markers skipped; cache2k: big-endian
u32 keys), converted to libCacheSim's `oracleGeneral` binary format with every
object of size 1 (so cache sizes count objects), and replayed through
libCacheSim's own C implementations via `process_trace`.
"""

import gzip
import json
import lzma
import os
import struct
import sys
import tempfile

import libcachesim as lcs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACES = os.path.join(ROOT, "..", "shared", "data", "traces")

# trace file -> cache sizes (objects) to evaluate.
SIZES = {
    "lirs_2_pools.trace.gz": [100, 500, 1000, 5000],
    "lirs_loop.trace.gz": [100, 500, 1000],
    "lirs_multi1.trace.gz": [100, 500, 1000, 2000],
    "lirs_sprite.trace.gz": [100, 500, 1000, 2500],
    "cache2k_web07.trace.xz": [100, 1000, 5000],
    "cache2k_orm-busy.trace.xz": [1000, 10000, 50000],
}

POLICIES = {
    "lru": lcs.LRU,
    "fifo": lcs.FIFO,
    "sieve": lcs.Sieve,
    "belady": lcs.Belady,
    "clock": lcs.Clock,
    "arc": lcs.ARC,
}


def read_keys(path):
    if path.endswith(".gz"):
        with gzip.open(path, "rt") as f:
            keys = []
            for line in f:
                line = line.strip()
                if not line or line == "*":
                    continue
                keys.append(int(line))
            return keys
    if path.endswith(".xz"):
        with lzma.open(path, "rb") as f:
            data = f.read()
        n = len(data) // 4
        return list(struct.unpack(">%dI" % n, data[: 4 * n]))
    raise ValueError("unknown trace format: " + path)


def write_oracle_general(keys, out):
    """u32 time, u64 obj_id, u32 size, i64 next_access_vtime (-1 = never)."""
    nxt = [-1] * len(keys)
    last = {}
    for i in range(len(keys) - 1, -1, -1):
        k = keys[i]
        nxt[i] = last.get(k, -1)
        last[k] = i
    rec = struct.Struct("<IQIq")
    with open(out, "wb") as f:
        for i, k in enumerate(keys):
            f.write(rec.pack(i, k, 1, nxt[i]))


def main():
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, sizes in SIZES.items():
            keys = read_keys(os.path.join(TRACES, name))
            og = os.path.join(tmp, name + ".oracleGeneral")
            write_oracle_general(keys, og)
            for policy, cls in POLICIES.items():
                for size in sizes:
                    reader = lcs.TraceReader(og, lcs.TraceType.ORACLE_GENERAL_TRACE)
                    cache = cls(cache_size=size)
                    miss_ratio, _byte_miss_ratio = cache.process_trace(reader)
                    misses = round(miss_ratio * len(keys))
                    results.append(
                        {
                            "trace": name,
                            "requests": len(keys),
                            "policy": policy,
                            "cache_size": size,
                            "misses": misses,
                        }
                    )
                    print(name, policy, size, misses, file=sys.stderr)
    json.dump(
        {"generator": "libcachesim " + getattr(lcs, "__version__", "0.3.5"), "results": results},
        sys.stdout,
        indent=1,
    )
    print()


if __name__ == "__main__":
    main()
