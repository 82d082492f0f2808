#!/usr/bin/env bash
# A 3-node Garage cluster on loopback, for agentmem's remote tier (T3) tests.
#
#   scripts/garage-cluster.sh start        [--dir DIR] [--base-port PORT]
#   scripts/garage-cluster.sh stop         [--dir DIR] [--keep]
#   scripts/garage-cluster.sh kill-node N  [--dir DIR]    # SIGKILL node N (1..3)
#   scripts/garage-cluster.sh start-node N [--dir DIR]
#   scripts/garage-cluster.sh status       [--dir DIR]
#   scripts/garage-cluster.sh smoke        [--dir DIR]    # PUT/GET/DELETE with curl --aws-sigv4
#   scripts/garage-cluster.sh install                     # cargo install garage into the cache
#   scripts/garage-cluster.sh install-if-missing          # the same unless one is found
#
# `start` writes DIR/env (source it): AGENTMEM_S3_ENDPOINT (node 1's S3 API),
# AGENTMEM_S3_ENDPOINTS (all three), AGENTMEM_S3_REGION, AGENTMEM_S3_BUCKET,
# AGENTMEM_S3_ACCESS_KEY_ID, AGENTMEM_S3_SECRET_ACCESS_KEY, AGENTMEM_S3_ALLOW_HTTP.
# Every socket listens on 127.0.0.1 only. Node N (1..3) uses
# PORT+10N (S3 API), PORT+10N+1 (RPC), PORT+10N+3 (admin API).
#
# Garage comes from $GARAGE_BIN, else `garage` on PATH, else the cache
# ($GARAGE_CACHE/bin/garage, default ~/.cache/agentmem/garage). With
# GARAGE_INSTALL=1 (CI) a missing binary is built there with
# `cargo install garage --locked --version $GARAGE_VERSION`.
set -euo pipefail

GARAGE_VERSION="${GARAGE_VERSION:-2.5.0}"
GARAGE_CACHE="${GARAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentmem/garage}"
DIR="${GARAGE_CLUSTER_DIR:-${TMPDIR:-/tmp}/agentmem-garage-$(id -u)}"
BASE_PORT="${GARAGE_BASE_PORT:-39100}"
BASE_PORT_SET=0
KEEP=0
NODES=3
BUCKET=agentmem
REGION=garage

die() { echo "garage-cluster: $*" >&2; exit 1; }
say() { echo "garage-cluster: $*" >&2; }

find_garage() {
    if [[ -n "${GARAGE_BIN:-}" ]]; then
        [[ -x "$GARAGE_BIN" ]] || die "GARAGE_BIN=$GARAGE_BIN is not an executable"
        echo "$GARAGE_BIN"
    elif command -v garage >/dev/null 2>&1; then
        command -v garage
    elif [[ -x "$GARAGE_CACHE/bin/garage" ]]; then
        echo "$GARAGE_CACHE/bin/garage"
    elif [[ "${GARAGE_INSTALL:-0}" == 1 ]]; then
        install_garage >&2
        echo "$GARAGE_CACHE/bin/garage"
    else
        die "no garage binary: set GARAGE_BIN, put garage on PATH, or run '$0 install' (GARAGE_INSTALL=1 does it on demand)"
    fi
}

install_garage() {
    if [[ "${1:-}" == if-missing ]] && GARAGE_INSTALL=0 find_garage >/dev/null 2>&1; then
        say "have $(GARAGE_INSTALL=0 find_garage)"
        return
    fi
    say "building garage $GARAGE_VERSION into $GARAGE_CACHE (cargo install --locked; takes a while)"
    local t0=$SECONDS
    cargo install garage --locked --version "$GARAGE_VERSION" --root "$GARAGE_CACHE"
    say "garage built in $((SECONDS - t0)) s"
}

node_dir() { echo "$DIR/node$1"; }
s3_port() { echo $((BASE_PORT + 10 * $1)); }
rpc_port() { echo $((BASE_PORT + 10 * $1 + 1)); }
admin_port() { echo $((BASE_PORT + 10 * $1 + 3)); }
gcli() { local n=$1; shift; "$GARAGE" -c "$(node_dir "$n")/garage.toml" "$@"; }

node_pid() {
    local f
    f="$(node_dir "$1")/pid"
    [[ -f "$f" ]] || return 1
    local pid
    pid=$(cat "$f")
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

hexrand() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

write_config() {
    local n=$1 secret=$2 d
    d=$(node_dir "$n")
    mkdir -p "$d/meta" "$d/data"
    cat >"$d/garage.toml" <<EOF
metadata_dir = "$d/meta"
data_dir = "$d/data"
db_engine = "lmdb"
replication_factor = 3
consistency_mode = "consistent"
rpc_bind_addr = "127.0.0.1:$(rpc_port "$n")"
rpc_public_addr = "127.0.0.1:$(rpc_port "$n")"
rpc_secret = "$secret"

[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$(s3_port "$n")"

[admin]
api_bind_addr = "127.0.0.1:$(admin_port "$n")"
EOF
    chmod 600 "$d/garage.toml"
}

launch_node() {
    local n=$1 d
    d=$(node_dir "$n")
    [[ -f "$d/garage.toml" ]] || die "node $n has no config in $d (run start first)"
    if node_pid "$n" >/dev/null; then
        say "node $n already running"
        return
    fi
    RUST_LOG="${GARAGE_LOG:-garage=warn}" "$GARAGE" -c "$d/garage.toml" server >>"$d/log" 2>&1 &
    echo $! >"$d/pid"
    # `garage node id` reads the key on disk; the server is up when its
    # RPC and S3 ports accept connections.
    local t=0
    until port_open "$(rpc_port "$n")" && port_open "$(s3_port "$n")"; do
        node_pid "$n" >/dev/null || die "node $n exited at start; see $d/log"
        ((t++ < 150)) || die "node $n did not listen within 30 s; see $d/log"
        sleep 0.2
    done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Nodes listed as healthy by node 1 (the table before any FAILED NODES one).
healthy_count() {
    gcli 1 status 2>/dev/null | awk '/==== FAILED/ { f = 1 } !f && /127\.0\.0\.1:/ { n++ } END { print n + 0 }'
}

wait_healthy() {
    local t=0
    until [[ $(healthy_count) -ge $NODES ]]; do
        ((t++ < 150)) || { gcli 1 status >&2 || true; die "cluster not healthy within 30 s"; }
        sleep 0.2
    done
}

cmd_start() {
    GARAGE=$(find_garage)
    if [[ -f "$DIR/env" ]] && node_pid 1 >/dev/null; then
        die "a cluster is already running in $DIR (stop it first)"
    fi
    for n in $(seq 1 $NODES); do
        for p in $(s3_port "$n") $(rpc_port "$n") $(admin_port "$n"); do
            if port_open "$p"; then
                die "port $p is taken on 127.0.0.1 (choose another --base-port)"
            fi
        done
    done
    rm -rf "$DIR"
    mkdir -p "$DIR"
    echo "$BASE_PORT" >"$DIR/base-port"
    local secret
    secret=$(hexrand 32)
    say "$("$GARAGE" --version 2>/dev/null | head -1) in $DIR, ports $BASE_PORT+"
    for n in $(seq 1 $NODES); do write_config "$n" "$secret"; done
    for n in $(seq 1 $NODES); do launch_node "$n"; done

    local ids=()
    for n in $(seq 1 $NODES); do ids+=("$(gcli "$n" node id -q 2>/dev/null)"); done
    for n in $(seq 2 $NODES); do gcli 1 node connect "${ids[$((n - 1))]}" >/dev/null; done
    wait_healthy

    for n in $(seq 1 $NODES); do
        gcli 1 layout assign -z dc1 -c 1G "${ids[$((n - 1))]%%@*}" >/dev/null
    done
    gcli 1 layout apply --version 1 >/dev/null
    local t=0
    until gcli 1 bucket list >/dev/null 2>&1; do
        ((t++ < 150)) || die "layout not live within 30 s"
        sleep 0.2
    done

    local key_id secret_key
    key_id="GK$(hexrand 12)"
    secret_key=$(hexrand 32)
    gcli 1 key import --yes -n agentmem "$key_id" "$secret_key" >/dev/null
    gcli 1 bucket create "$BUCKET" >/dev/null
    gcli 1 bucket allow --read --write --owner "$BUCKET" --key "$key_id" >/dev/null

    local endpoints=""
    for n in $(seq 1 $NODES); do endpoints+="${endpoints:+,}http://127.0.0.1:$(s3_port "$n")"; done
    cat >"$DIR/env" <<EOF
export AGENTMEM_GARAGE_DIR="$DIR"
export AGENTMEM_S3_ENDPOINT="http://127.0.0.1:$(s3_port 1)"
export AGENTMEM_S3_ENDPOINTS="$endpoints"
export AGENTMEM_S3_REGION="$REGION"
export AGENTMEM_S3_BUCKET="$BUCKET"
export AGENTMEM_S3_ACCESS_KEY_ID="$key_id"
export AGENTMEM_S3_SECRET_ACCESS_KEY="$secret_key"
export AGENTMEM_S3_ALLOW_HTTP=1
EOF
    chmod 600 "$DIR/env"
    say "3 nodes up, replication factor 3, bucket '$BUCKET'; credentials in $DIR/env"
    cat "$DIR/env"
}

cmd_stop() {
    GARAGE=$(find_garage 2>/dev/null || echo garage)
    local pids=()
    for n in $(seq 1 $NODES); do
        if pid=$(node_pid "$n"); then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    local t=0
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((t++ < 100)); do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ $KEEP == 1 ]]; then
        say "stopped; data kept in $DIR"
    else
        rm -rf "$DIR"
        say "stopped; $DIR removed"
    fi
}

cmd_kill_node() {
    local n=$1 pid
    pid=$(node_pid "$n") || die "node $n is not running"
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    say "node $n (pid $pid) killed"
}

cmd_start_node() {
    GARAGE=$(find_garage)
    launch_node "$1"
    # Peers find each other again on their own, but slowly after every
    # node went down; introduce the restarted node to the running ones.
    for m in $(seq 1 $NODES); do
        if [[ $m != "$1" ]] && node_pid "$m" >/dev/null; then
            gcli "$1" node connect "$(gcli "$m" node id -q 2>/dev/null)" >/dev/null 2>&1 || true
        fi
    done
    say "node $1 started"
}

cmd_status() {
    GARAGE=$(find_garage)
    for n in $(seq 1 $NODES); do
        if pid=$(node_pid "$n"); then echo "node $n: running (pid $pid)"; else echo "node $n: down"; fi
    done
    for n in $(seq 1 $NODES); do
        if node_pid "$n" >/dev/null; then gcli "$n" status; return; fi
    done
}

cmd_smoke() {
    [[ -f "$DIR/env" ]] || die "no cluster in $DIR"
    # shellcheck disable=SC1091
    source "$DIR/env"
    command -v curl >/dev/null || die "smoke needs curl"
    local url="$AGENTMEM_S3_ENDPOINT/$AGENTMEM_S3_BUCKET/smoke-$$" body
    # Garage requires x-amz-content-sha256, which curl does not add itself.
    local auth=(--aws-sigv4 "aws:amz:$AGENTMEM_S3_REGION:s3"
        --user "$AGENTMEM_S3_ACCESS_KEY_ID:$AGENTMEM_S3_SECRET_ACCESS_KEY"
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
    curl -fsS "${auth[@]}" -X PUT --data-binary "hello from agentmem" "$url" >/dev/null
    body=$(curl -fsS "${auth[@]}" "$url")
    curl -fsS "${auth[@]}" -X DELETE "$url" >/dev/null
    [[ "$body" == "hello from agentmem" ]] || die "smoke: read back '$body'"
    say "smoke: PUT, GET, DELETE through $AGENTMEM_S3_ENDPOINT ok"
}

cmd=${1:-}
[[ -n "$cmd" ]] || die "usage: $0 start|stop|kill-node N|start-node N|status|smoke|install|install-if-missing [--dir DIR] [--base-port PORT] [--keep]"
shift
arg=""
case "$cmd" in kill-node | start-node) arg=${1:-}; shift || true ;; esac
while [[ $# -gt 0 ]]; do
    case "$1" in
    --dir) DIR=$2; shift 2 ;;
    --base-port) BASE_PORT=$2; BASE_PORT_SET=1; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) die "unknown argument $1" ;;
    esac
done
# Later commands use the ports the cluster was started with.
if [[ "$cmd" != start && $BASE_PORT_SET == 0 && -f "$DIR/base-port" ]]; then
    BASE_PORT=$(cat "$DIR/base-port")
fi
if [[ -n "$arg" ]] && ! [[ "$arg" =~ ^[1-3]$ ]]; then die "node number must be 1..3, not '$arg'"; fi

case "$cmd" in
start) cmd_start ;;
stop) cmd_stop ;;
kill-node) cmd_kill_node "$arg" ;;
start-node) cmd_start_node "$arg" ;;
status) cmd_status ;;
smoke) cmd_smoke ;;
install) install_garage ;;
install-if-missing) install_garage if-missing ;;
*) die "unknown command $cmd" ;;
esac
