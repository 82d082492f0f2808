#!/usr/bin/env bash
# Build libagentmem, install it into a temporary prefix, compile the C test
# program with cc against the installed header and library (found through
# pkg-config), and run it under valgrind: any leak or invalid access fails.
# With agentmemd built, the test also runs against a daemon on a temp socket.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
tmp=$(mktemp -d)
daemon_pid=
cleanup() {
    [[ -n $daemon_pid ]] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

cargo build --release -p agentmem-capi -p agentmem-daemon
scripts/install-capi.sh "$tmp/prefix" >/dev/null
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
defs=()
if grep -q agentmem_connect "$tmp/prefix/include/agentmem.h"; then defs+=(-DAGENTMEM_HAVE_CONNECT); fi

# Shared library.
cc -std=c11 -Wall -Wextra -Werror -g "${defs[@]}" crates/agentmem-capi/tests/c/test_agentmem.c \
    $(pkg-config --cflags --libs agentmem) -Wl,-rpath,"$tmp/prefix/lib" -o "$tmp/test_shared"
# Static library: links on its own with the private libs pkg-config names.
cc -std=c11 -Wall -Wextra -Werror "${defs[@]}" crates/agentmem-capi/tests/c/test_agentmem.c \
    $(pkg-config --cflags agentmem) "$tmp/prefix/lib/libagentmem.a" \
    $(pkg-config --libs-only-l --static agentmem | sed 's/-lagentmem//') -o "$tmp/test_static"

# Each run gets a fresh daemon: agentmemd keeps a finished run's agents for
# their grace time, which would show in the next run's stats.
start_daemon() {
    args=()
    [[ ${defs[*]-} == *CONNECT* && -x target/release/agentmemd ]] || return 0
    if [[ -n $daemon_pid ]]; then kill "$daemon_pid"; wait "$daemon_pid" || true; daemon_pid=; fi
    local sock="$tmp/agentmemd-$RANDOM.sock"
    target/release/agentmemd --ram-only --socket "$sock" >>"$tmp/agentmemd.log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.1; done
    [[ -S $sock ]] || { cat "$tmp/agentmemd.log"; echo "agentmemd did not start" >&2; exit 1; }
    args=("$sock")
}

echo "--- static build"
start_daemon
timeout 120 "$tmp/test_static" "${args[@]}"
echo "--- shared build under valgrind"
start_daemon
timeout 600 valgrind --quiet --error-exitcode=99 --leak-check=full \
    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
    "$tmp/test_shared" "${args[@]}"
