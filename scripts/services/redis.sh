#!/usr/bin/env bash
# Redis for tests and for a distributed gateway's shared state: Debian's redis-server on
# 127.0.0.1:6390 (not 6379, so a system Redis the package may start is never ours to touch).
#
#   scripts/services/redis.sh start|stop|restart|status|url
#
# Config, data, pidfile and log live in .services/redis/. No password: it listens on loopback
# only, like every test service here.
set -euo pipefail
# shellcheck disable=SC2034  # read by lib.sh's say()
SERVICE=redis
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HOST=127.0.0.1
PORT="${LLMTAP_REDIS_PORT:-6390}"
URL="redis://$HOST:$PORT/0"
DIR="$(svc_dir redis)"
CONF="$DIR/redis.conf"
PIDFILE="$DIR/redis.pid"
LOG="$DIR/redis.log"
START_TIMEOUT_S="${LLMTAP_REDIS_START_TIMEOUT_S:-30}"

ready() {
    redis-cli -h "$HOST" -p "$PORT" ping 2>/dev/null | grep -q PONG
}

our_pid() {
    service_pid "$PIDFILE" "$PORT" 'redis-server'
}

port_free() {
    ! port_open "$HOST" "$PORT"
}

write_conf() {
    mkdir -p "$DIR/data"
    cat >"$CONF" <<CONF
# written by llmtap scripts/services/redis.sh
bind $HOST
port $PORT
protected-mode yes
daemonize no
dir $DIR/data
save ""
appendonly no
maxmemory 256mb
maxmemory-policy noeviction
CONF
}

start() {
    need_cmd redis-server redis-server
    need_cmd redis-cli redis-tools
    if port_open "$HOST" "$PORT"; then
        if our_pid >/dev/null && ready; then
            say "reusing Redis on $HOST:$PORT"
            echo "$URL"
            return 0
        fi
        die "port $PORT is taken by something that is not our Redis: $(pid_on_port "$PORT")"
    fi
    write_conf
    say "starting Redis on $HOST:$PORT (logs: $LOG)"
    rm -f "$PIDFILE"
    launch "$PIDFILE" "$LOG" redis-server "$CONF"
    wait_until "$START_TIMEOUT_S" "$LOG" "Redis on $HOST:$PORT" ready
    say "ready on $HOST:$PORT"
    echo "$URL"
}

stop() {
    local pid
    if ! pid="$(our_pid)"; then
        say "not running"
        rm -f "$PIDFILE"
        return 0
    fi
    say "stopping pid $pid"
    stop_pid "$pid" 15
    rm -f "$PIDFILE"
    wait_until 15 "$LOG" "release of port $PORT" port_free
    say "stopped"
}

status() {
    if ready; then
        say "running on $HOST:$PORT (pid $(our_pid || echo '?'))"
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
url) echo "$URL" ;;
*)
    echo "usage: $0 start|stop|restart|status|url" >&2
    exit 2
    ;;
esac
