#!/usr/bin/env bash
# Run the cargo-fuzz targets in fuzz/ (frame decoder, cold-tier record
# decoder, opening arbitrary cold-tier files) for a bounded time each, on
# the stable toolchain: libFuzzer (from the libfuzzer-sys crate) with the
# same SanitizerCoverage instrumentation cargo-fuzz asks rustc for, minus
# AddressSanitizer (that needs nightly; the targets are safe Rust, and
# debug assertions and overflow checks are on). A crash, panic, timeout or
# out-of-memory fails the script and leaves the input in $out/artifacts.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] (default 20; env FUZZ_SECS too)
# Corpora grow in target/fuzz/corpus/<target>, seeded from fuzz/corpus/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
secs="${1:-${FUZZ_SECS:-20}}"
# libfuzzer-sys compiles libFuzzer, which is C++.
command -v c++ >/dev/null || { apt-get update -qq && apt-get install -y -qq g++ >/dev/null; }
triple="$(rustc -vV | sed -n 's/^host: //p')"
out="$root/target/fuzz"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cdebug-assertions -Coverflow-checks"
# --target keeps the flags off build scripts and proc macros.
(cd "$root/fuzz" && cargo build --release --target "$triple" --target-dir "$out")
mkdir -p "$out/artifacts"
for t in frame_decoder record open; do
    corpus="$out/corpus/$t"
    mkdir -p "$corpus"
    [[ -d $root/fuzz/corpus/$t ]] && cp -n "$root/fuzz/corpus/$t"/* "$corpus"/ 2>/dev/null || true
    log="$out/$t.log"
    echo "--- fuzz $t for ${secs}s"
    if ! "$out/$triple/release/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$out/artifacts/$t-" "$corpus" >"$log" 2>&1; then
        tail -40 "$log"
        echo "fuzz target $t failed: its input is in $out/artifacts/" >&2
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "$t: $runs executions, $cov, corpus $(ls "$corpus" | wc -l) inputs, no crash"
done
