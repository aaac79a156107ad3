#!/usr/bin/env bash
# Apache Kafka 4.x, single-node KRaft broker+controller on 127.0.0.1:9092 (controller :9093).
#
#   scripts/services/kafka.sh start|stop|restart|reset|status|bootstrap
#
# The jars come from Maven Central through scripts/services/kafka/pom.xml and are cached in
# ~/.cache/llmtap/kafka-<version>/lib so re-clones reuse them. Data, config, pidfile and logs live
# in .services/kafka/; stop keeps the data, so stop+start (broker-outage tests) is a restart.
set -euo pipefail
# shellcheck disable=SC2034  # read by lib.sh's say()
SERVICE=kafka
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HOST=127.0.0.1
PORT=9092
CONTROLLER_PORT=9093
BOOTSTRAP="$HOST:$PORT"
TEMPLATES="$ROOT/scripts/services/kafka"
POM="$TEMPLATES/pom.xml"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")"
LIB="$LLMTAP_CACHE/kafka-$KAFKA_VERSION/lib"
DIR="$(svc_dir kafka)"
DATA="$DIR/data"
PIDFILE="$DIR/kafka.pid"
LOG="$DIR/server.log"
STDOUT_LOG="$DIR/stdout.log"
START_TIMEOUT_S="${LLMTAP_KAFKA_START_TIMEOUT_S:-120}"

# Fetch the broker's jars once per pom: the stamp holds the pom's hash.
resolve_jars() {
    local stamp="$LIB/.pom.sha256" want
    want="$(sha256sum "$POM" | cut -d' ' -f1)"
    if [[ -s "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    need_cmd java openjdk-17-jre-headless
    need_cmd mvn maven
    say "resolving kafka_2.13:$KAFKA_VERSION from Maven Central into $LIB"
    local tmp="$LIB.tmp.$$"
    rm -rf "$tmp"
    if ! mvn -B -q -f "$POM" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$tmp" >"$DIR/mvn.log" 2>&1; then
        log_tail "$DIR/mvn.log"
        rm -rf "$tmp"
        die "mvn could not resolve Kafka $KAFKA_VERSION"
    fi
    rm -rf "$LIB" "$TEMPLATES/target"
    mkdir -p "$(dirname "$LIB")"
    mv "$tmp" "$LIB"
    printf '%s\n' "$want" >"$stamp"
}

java_cmd() {
    local heap_opts
    read -ra heap_opts <<<"${LLMTAP_KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
    JAVA_ARGS=(java "${heap_opts[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
        -Dkafka.logs.dir="$DIR" -Dlog4j2.configurationFile="$TEMPLATES/log4j2.xml"
        -cp "$LIB/*")
}

render_config() {
    sed "s:@DATA_DIR@:$DATA:g" "$TEMPLATES/server.properties" >"$DIR/server.properties"
}

# Format the KRaft log dir once; a dir without meta.properties is a half-done format.
format_storage() {
    [[ -f "$DATA/meta.properties" ]] && return 0
    rm -rf "$DATA"
    local cluster_id
    # a Kafka Uuid is 16 random bytes in unpadded URL-safe base64; like Kafka's own, never one
    # starting with "-", which the storage tool would read as an option (1 start in 64 failed)
    cluster_id="-"
    while [[ "$cluster_id" == -* ]]; do
        cluster_id="$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
    done
    say "formatting $DATA (cluster id $cluster_id)"
    java_cmd
    if ! "${JAVA_ARGS[@]}" kafka.tools.StorageTool format -t "$cluster_id" \
        -c "$DIR/server.properties" --standalone >"$DIR/format.log" 2>&1; then
        log_tail "$DIR/format.log"
        die "kafka storage format failed"
    fi
}

# The broker answers a metadata request with itself in it.
broker_ready() {
    if python_has confluent_kafka; then
        "$LLMTAP_PYTHON" - "$BOOTSTRAP" 2>/dev/null <<'EOF'
import sys
from confluent_kafka.admin import AdminClient

admin = AdminClient({"bootstrap.servers": sys.argv[1], "log_level": 0})
meta = admin.list_topics(timeout=2)
sys.exit(0 if meta.brokers else 1)
EOF
    else
        # no client yet (kafka.sh run before the venv exists): the log line is the signal
        port_open "$HOST" "$PORT" && grep -q 'Kafka Server started' "$LOG" 2>/dev/null
    fi
}

our_pid() {
    service_pid "$PIDFILE" "$PORT" 'kafka\.Kafka'
}

ports_free() {
    ! port_open "$HOST" "$PORT" && ! port_open "$HOST" "$CONTROLLER_PORT"
}

ready_or_died() {
    broker_ready && return 0
    if ! pid_alive "$PIDFILE"; then
        log_tail "$LOG"
        log_tail "$STDOUT_LOG"
        die "broker exited during start-up"
    fi
    return 1
}

start() {
    if port_open "$HOST" "$PORT"; then
        if our_pid >/dev/null; then
            wait_until "$START_TIMEOUT_S" "$LOG" "Kafka on $BOOTSTRAP" broker_ready
            say "reusing the broker on $BOOTSTRAP"
            echo "$BOOTSTRAP"
            return 0
        fi
        die "port $PORT is taken by something that is not a Kafka broker: $(pid_on_port "$PORT")"
    fi
    resolve_jars
    render_config
    format_storage
    java_cmd
    say "starting Kafka $KAFKA_VERSION on $BOOTSTRAP (logs: $LOG)"
    rm -f "$PIDFILE"
    # a fresh server.log: the readiness fallback looks for this start's "started" line
    [[ -f "$LOG" ]] && mv "$LOG" "$LOG.prev"
    launch "$PIDFILE" "$STDOUT_LOG" "${JAVA_ARGS[@]}" kafka.Kafka "$DIR/server.properties"
    wait_until "$START_TIMEOUT_S" "$LOG" "Kafka on $BOOTSTRAP" ready_or_died
    say "ready on $BOOTSTRAP"
    echo "$BOOTSTRAP"
}

stop() {
    local pid
    if ! pid="$(our_pid)"; then
        say "not running"
        rm -f "$PIDFILE"
        return 0
    fi
    say "stopping pid $pid"
    stop_pid "$pid" 60
    rm -f "$PIDFILE"
    # the ports must be free before a start that follows at once
    wait_until 30 "$LOG" "release of ports $PORT/$CONTROLLER_PORT" ports_free
    say "stopped"
}

status() {
    if port_open "$HOST" "$PORT" && broker_ready; then
        say "running on $BOOTSTRAP (pid $(our_pid || echo '?'))"
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
reset)
    # topics that tests left behind make every restart slower (each partition is loaded and
    # closed): start over with an empty log dir
    lock_service "$DIR"
    stop
    rm -rf "$DATA"
    start
    ;;
status) status ;;
bootstrap) echo "$BOOTSTRAP" ;;
*)
    echo "usage: $0 start|stop|restart|reset|status|bootstrap" >&2
    exit 2
    ;;
esac
