# shellcheck shell=bash disable=SC2034  # the variables here are read by the scripts that source it
# Shared helpers for scripts/services/*.sh — sourced, never run.
#
# Conventions: every service keeps its pidfile, logs and (where it owns them) data under
# .services/<name>/ in the repo (gitignored); downloads that survive a re-clone go under
# $LLMTAP_CACHE. Every wait is bounded and prints the log tail when it gives up.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SERVICES_DIR="${LLMTAP_SERVICES_DIR:-$ROOT/.services}"
LLMTAP_CACHE="${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/llmtap"
LLMTAP_PYTHON="${LLMTAP_PYTHON:-$ROOT/.venv/bin/python}"

say() { printf '[%s] %s\n' "${SERVICE:-services}" "$*" >&2; }
die() {
    say "ERROR: $*"
    exit 1
}

svc_dir() {
    mkdir -p "$SERVICES_DIR/$1"
    printf '%s\n' "$SERVICES_DIR/$1"
}

# lock_service DIR — hold DIR/lock until this script exits, so two starts (or a start and a stop)
# of the same service from this checkout take turns instead of racing for its port. Anything that
# leaves a daemon behind must be run with 9>&- (see launch), or the daemon keeps the lock.
lock_service() {
    exec 9>"$1/lock"
    flock -w 300 9 || die "could not lock $1/lock within 300s"
}

# port_open HOST PORT — true when something accepts TCP connections there.
port_open() {
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# pid_alive PIDFILE — true when the pidfile names a live process.
pid_alive() {
    local pid
    [[ -s "$1" ]] || return 1
    pid="$(cat "$1")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# pid_runs PID PATTERN — true when process PID is alive and its command line matches PATTERN
# (a pidfile left by a killed service may name a pid that now belongs to something else).
pid_runs() {
    [[ "$1" =~ ^[0-9]+$ && -r "/proc/$1/cmdline" ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "$2"
}

# service_pid PIDFILE PORT PATTERN — the pid of our service: the pidfile's, or else (started from
# another checkout) the one listening on PORT; either only if its command line matches PATTERN.
service_pid() {
    local pid
    for pid in "$(cat "$1" 2>/dev/null)" "$(pid_on_port "$2")"; do
        if pid_runs "$pid" "$3"; then
            printf '%s\n' "$pid"
            return 0
        fi
    done
    return 1
}

# pid_on_port PORT — the pid of the process listening on 127.0.0.1:PORT, if any.
pid_on_port() {
    ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2
}

# log_tail FILE — the last lines of a log, for failure messages.
log_tail() {
    if [[ -f "$1" ]]; then
        say "---- last 40 lines of $1 ----"
        tail -n 40 "$1" >&2
        say "---- end of $1 ----"
    else
        say "(no log at $1)"
    fi
}

# wait_until TIMEOUT_S LOGFILE DESCRIPTION CMD... — poll CMD until it succeeds; on timeout
# print the log tail and fail. Polling (not a fixed sleep) keeps warm starts fast.
wait_until() {
    local timeout="$1" logfile="$2" what="$3"
    shift 3
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            log_tail "$logfile"
            die "$what not ready after ${timeout}s"
        fi
        sleep 0.5
    done
}

# stop_pid PID TIMEOUT_S — SIGTERM, wait for exit, SIGKILL as a last resort.
stop_pid() {
    local pid="$1" timeout="$2"
    kill -TERM "$pid" 2>/dev/null || return 0
    local deadline=$((SECONDS + timeout))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            say "pid $pid still running after ${timeout}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
            return 0
        fi
        sleep 0.1
    done
}

# launch PIDFILE LOGFILE CMD... — start CMD as a daemon in its own session, so it outlives this
# script and a Ctrl-C on the test run. The pidfile is written by the process itself just before
# it execs CMD, so it names CMD whether or not setsid had to fork. fd 9 (the service lock) is not
# handed down: the daemon would hold the lock for its whole life.
launch() {
    local pidfile="$1" logfile="$2"
    shift 2
    # shellcheck disable=SC2016  # expanded by the inner bash
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" >"$logfile" 2>&1 </dev/null 9>&- &
    local deadline=$((SECONDS + 10))
    until [[ -s "$pidfile" ]]; do
        ((SECONDS < deadline)) || die "$1 did not start"
        sleep 0.05
    done
}

APT_UPDATED=0
# apt_install PKG... — install Debian packages non-interactively, updating the lists once.
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found; install $* by hand"
    if ((APT_UPDATED == 0)); then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    # 9>&-: a package may start its daemon, which must not inherit the service lock
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 9>&-
}

# need_cmd CMD PKG... — make sure CMD exists, installing PKG... from Debian if not.
need_cmd() {
    local cmd="$1"
    shift
    command -v "$cmd" >/dev/null || apt_install "$@"
    command -v "$cmd" >/dev/null || die "$cmd still missing after installing $*"
}

# python_has MODULE — true when the project venv's python can import MODULE.
python_has() {
    [[ -x "$LLMTAP_PYTHON" ]] && "$LLMTAP_PYTHON" -c "import $1" 2>/dev/null
}
