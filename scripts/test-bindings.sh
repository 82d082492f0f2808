#!/usr/bin/env bash
# Build and test the Node.js and Python bindings (they are not workspace
# members: see the root Cargo.toml). Installs what it needs: @napi-rs/cli
# from npm (bindings/node/package-lock.json), maturin and pytest from PyPI
# into a venv under target/. Builds share the workspace's target directory;
# to share its dependency builds too, the bindings' lock files start from the
# root's (refresh: cp Cargo.lock bindings/node/ && (cd bindings/node && cargo metadata >/dev/null)).
# With agentmemd built (target/release/agentmemd), the tests also run
# against a daemon on a temporary socket.
# The framework adapters are tested with the frameworks' own suites, at
# pinned versions: the Python package's LangGraph saver with
# langgraph-checkpoint-conformance, its Agents SDK session with its protocol
# tests (pip, into the same venv); bindings/node-langgraph with
# @langchain/langgraph-checkpoint-validation under vitest (npm ci, its lock
# file). Then both packages are installed as users do (the built wheel with
# its extras; npm pack + npm install) and the README examples run.
#   scripts/test-bindings.sh [node|python]...   (default: both)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="$root/target"
which=("$@")
[[ ${#which[@]} -gt 0 ]] || which=(node python)

tmp=$(mktemp -d)
daemon_pid=
stop_daemon() {
    if [[ -n $daemon_pid ]]; then kill "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
    daemon_pid=
}
cleanup() { stop_daemon; rm -rf "$tmp"; }
trap cleanup EXIT
# A fresh agentmemd per binding (it keeps a finished run's agents for their
# grace time); the tests also run against it when AGENTMEM_TEST_SOCKET is set.
start_daemon() {
    stop_daemon
    unset AGENTMEM_TEST_SOCKET
    [[ -x $root/target/release/agentmemd && ${AGENTMEM_NO_DAEMON_TESTS:-} != 1 ]] || return 0
    export AGENTMEM_TEST_SOCKET="$tmp/agentmemd-$1.sock"
    "$root/target/release/agentmemd" --ram-only --socket "$AGENTMEM_TEST_SOCKET" >>"$tmp/agentmemd.log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 100); do [[ -S $AGENTMEM_TEST_SOCKET ]] && break; sleep 0.1; done
    [[ -S $AGENTMEM_TEST_SOCKET ]] || { cat "$tmp/agentmemd.log"; echo "agentmemd did not start" >&2; exit 1; }
    echo "bindings: testing against agentmemd at $AGENTMEM_TEST_SOCKET too"
}
cargo build --release -q -p agentmem-daemon

# Fails if a generated file differs from the committed one.
check_generated() {
    if ! git -C "$root" diff --quiet -- "$@"; then
        git -C "$root" --no-pager diff --stat -- "$@"
        echo "generated files differ from the committed ones: commit them" >&2
        exit 1
    fi
}

for w in "${which[@]}"; do
    case $w in
    node)
        echo "==> bindings/node: napi build, index.d.ts, node --test"
        cd "$root/bindings/node"
        cargo fmt --check
        cargo clippy --release --all-targets -q -- -D warnings
        npm ci --no-audit --no-fund --loglevel=error
        npx napi build --platform --release --js index.js --dts index.d.ts
        check_generated bindings/node/index.d.ts bindings/node/index.js
        start_daemon node
        node --test test/
        node --expose-gc examples/hundred-agents.mjs --agents 100 >/dev/null
        echo "==> bindings/node-langgraph: LangGraph.js checkpoint validation (vitest)"
        cd "$root/bindings/node-langgraph"
        npm ci --no-audit --no-fund --loglevel=error
        npx vitest run --globals
        echo "==> npm pack + npm install of both packages, the README's LangGraph.js example"
        mkdir -p "$tmp/npm-try"
        (cd "$root/bindings/node" && npm pack --silent --pack-destination "$tmp/npm-try" >/dev/null)
        npm pack --silent --pack-destination "$tmp/npm-try" >/dev/null
        cd "$tmp/npm-try"
        echo '{"name":"try","private":true,"type":"module"}' >package.json
        lg=$(node -p 'require(process.argv[1]).devDependencies["@langchain/langgraph"]' "$root/bindings/node-langgraph/package.json")
        core=$(node -p 'require(process.argv[1]).devDependencies["@langchain/core"]' "$root/bindings/node-langgraph/package.json")
        npm install --no-audit --no-fund --loglevel=error ./agentmem-0.1.0.tgz ./agentmem-langgraph-0.1.0.tgz \
            "@langchain/langgraph@$lg" "@langchain/core@$core"
        cp "$root/bindings/node-langgraph/examples/chat.mjs" .
        [[ $(node chat.mjs) == "you said hello" ]] || { echo "the README's LangGraph.js example failed" >&2; exit 1; }
        ;;
    python)
        echo "==> bindings/python: maturin develop, pytest"
        venv="$root/target/py-venv"
        [[ -x $venv/bin/python ]] || python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "maturin>=1.5,<2" "pytest>=7" \
            langgraph==1.2.24 langgraph-checkpoint==4.3.2 langgraph-checkpoint-conformance==0.0.2 \
            openai-agents==0.24.0
        cd "$root/bindings/python"
        cargo fmt --check
        cargo clippy --release --all-targets -q -- -D warnings
        VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" maturin develop --release --quiet
        start_daemon python
        OPENAI_AGENTS_DISABLE_TRACING=1 "$venv/bin/python" -m pytest -q tests
        "$venv/bin/python" examples/hundred_agents.py --agents 100 >/dev/null
        echo "==> pip install of the built wheel with its extras, the README's examples"
        VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" maturin build --release --quiet --out "$tmp/wheels"
        wheel=$(ls "$tmp"/wheels/agentmem-*.whl)
        "$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheel"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "$wheel[langgraph,openai-agents]"
        cd "$tmp"
        [[ $("$venv/bin/python" "$root/bindings/python/examples/langgraph_chat.py") == "you said hello" ]] ||
            { echo "the README's LangGraph example failed" >&2; exit 1; }
        [[ $(OPENAI_AGENTS_DISABLE_TRACING=1 "$venv/bin/python" "$root/bindings/python/examples/agents_session.py") == "4 items in the session" ]] ||
            { echo "the README's Agents SDK example failed" >&2; exit 1; }
        ;;
    *) echo "unknown binding $w (node or python)" >&2; exit 2 ;;
    esac
done
