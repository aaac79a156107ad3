#!/usr/bin/env bash
# PostgreSQL for tests: Debian's cluster "<version> main" on 127.0.0.1:5432, with role and
# database "llmtap" (password "llmtap", CREATEDB so tests can make their own databases).
#
#   scripts/services/postgres.sh start|stop|status|url
#
# The cluster is the system one (data in /var/lib/postgresql, server log in /var/log/postgresql);
# .services/postgres/ holds only the output of the set-up commands.
set -euo pipefail
# shellcheck disable=SC2034  # read by lib.sh's say()
SERVICE=postgres
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HOST=127.0.0.1
# another cluster or port only to avoid a clash (or to try this script on a throwaway cluster)
CLUSTER="${LLMTAP_POSTGRES_CLUSTER:-main}"
PORT="${LLMTAP_POSTGRES_PORT:-5432}"
ROLE=llmtap
PASSWORD=llmtap
DATABASE=llmtap
URL="postgresql://$ROLE:$PASSWORD@$HOST:$PORT/$DATABASE"
DIR="$(svc_dir postgres)"
SETUP_LOG="$DIR/setup.log"
START_TIMEOUT_S="${LLMTAP_POSTGRES_START_TIMEOUT_S:-60}"

# The newest installed server version, installing Debian's default one if there is none.
server_version() {
    local ver
    ver="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n1)"
    if [[ -z "$ver" || ! -x "/usr/lib/postgresql/$ver/bin/postgres" ]]; then
        apt_install postgresql
        ver="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)"
    fi
    [[ -n "$ver" ]] || die "no PostgreSQL server found after installing it"
    printf '%s\n' "$ver"
}

ensure_cluster() {
    local ver="$1"
    if ! pg_lsclusters -h | awk -v v="$ver" -v c="$CLUSTER" '$1 == v && $2 == c' | grep -q .; then
        say "creating cluster $ver $CLUSTER"
        pg_createcluster "$ver" "$CLUSTER" -p "$PORT" >>"$SETUP_LOG" 2>&1 || {
            log_tail "$SETUP_LOG"
            die "pg_createcluster failed"
        }
    fi
    # bind loopback only, on the port the tests expect (a conf.d file keeps Debian's file intact)
    local conf="/etc/postgresql/$ver/$CLUSTER/conf.d/llmtap.conf"
    local want
    want="$(printf "# written by llmtap scripts/services/postgres.sh\nlisten_addresses = '%s'\nport = %s\n" "$HOST" "$PORT")"
    if [[ ! -f "$conf" || "$(cat "$conf")" != "$want" ]]; then
        mkdir -p "$(dirname "$conf")"
        printf '%s\n' "$want" >"$conf"
        # a running cluster that already answers where the tests look keeps running: the file
        # applies at its next start, and nobody else's connections are cut
        if cluster_online "$ver" && ! ready; then
            say "restarting cluster $ver $CLUSTER to apply $conf"
            pg_ctlcluster "$ver" "$CLUSTER" restart >>"$SETUP_LOG" 2>&1 9>&-
        fi
    fi
}

cluster_online() {
    pg_lsclusters -h | awk -v v="$1" -v c="$CLUSTER" '$1 == v && $2 == c {print $4}' | grep -q online
}

as_postgres() {
    # cd /: psql warns when the postgres user cannot read the current directory
    (cd / && runuser -u postgres -- "$@")
}

psql_admin() {
    # over the Unix socket: Debian lets the postgres OS user in by peer auth, no password
    as_postgres psql -p "$PORT" -X -q -v ON_ERROR_STOP=1 -tA "$@"
}

ready() {
    pg_isready -q -h "$HOST" -p "$PORT"
}

ensure_role_and_db() {
    local found
    found="$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")"
    if [[ -z "$found" ]]; then
        say "creating role $ROLE"
        psql_admin -c "CREATE ROLE $ROLE"
    fi
    # every start: a role made by hand earlier may lack the password or CREATEDB
    psql_admin -c "ALTER ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'"
    found="$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")"
    if [[ -z "$found" ]]; then
        say "creating database $DATABASE"
        psql_admin -c "CREATE DATABASE $DATABASE OWNER $ROLE"
    fi
}

start() {
    need_cmd pg_ctlcluster postgresql-common
    local ver
    ver="$(server_version)"
    # pg_lsclusters and friends come with postgresql-common, which the server pulls in
    need_cmd pg_isready postgresql-client
    ensure_cluster "$ver"
    if cluster_online "$ver"; then
        say "reusing cluster $ver $CLUSTER"
    else
        say "starting cluster $ver $CLUSTER"
        pg_ctlcluster "$ver" "$CLUSTER" start >>"$SETUP_LOG" 2>&1 9>&- || {
            log_tail "$SETUP_LOG"
            log_tail "/var/log/postgresql/postgresql-$ver-$CLUSTER.log"
            die "pg_ctlcluster $ver $CLUSTER start failed"
        }
    fi
    wait_until "$START_TIMEOUT_S" "/var/log/postgresql/postgresql-$ver-$CLUSTER.log" \
        "PostgreSQL on $HOST:$PORT" ready
    ensure_role_and_db
    say "ready on $HOST:$PORT"
    echo "$URL"
}

stop() {
    local ver
    for ver in $(pg_lsclusters -h 2>/dev/null | awk -v c="$CLUSTER" '$2 == c && $4 ~ /online/ {print $1}'); do
        say "stopping cluster $ver $CLUSTER"
        pg_ctlcluster "$ver" "$CLUSTER" stop -m fast
    done
}

status() {
    if ready; then
        say "running on $HOST:$PORT"
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
status) status ;;
url) echo "$URL" ;;
*)
    echo "usage: $0 start|stop|status|url" >&2
    exit 2
    ;;
esac
