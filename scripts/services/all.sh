#!/usr/bin/env bash
# Every real service the tests need: PostgreSQL, Kafka, SeaweedFS (S3), Redis.
#
#   scripts/services/all.sh start   start (or reuse) all four; print `export …` lines for the tests
#   scripts/services/all.sh env     print the same `export …` lines without starting anything
#   scripts/services/all.sh stop    stop all four (data is kept)
#   scripts/services/all.sh status  exit 0 only if all four answer
#
#   eval "$(scripts/services/all.sh start)" && .venv/bin/pytest -m kafka
#
# Sequential on purpose: on a fresh machine two of them may run apt-get, which takes one lock.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

print_env() {
    printf 'export LLMTAP_TEST_POSTGRES_URL=%q\n' "$1"
    printf 'export LLMTAP_TEST_KAFKA_BOOTSTRAP=%q\n' "$2"
    printf 'export LLMTAP_TEST_S3_ENDPOINT=%q\n' "$3"
    printf 'export LLMTAP_TEST_REDIS_URL=%q\n' "$4"
    "$HERE/seaweedfs.sh" env
}

case "${1:-}" in
start)
    pg_url="$("$HERE/postgres.sh" start)"
    bootstrap="$("$HERE/kafka.sh" start)"
    s3_endpoint="$("$HERE/seaweedfs.sh" start)"
    redis_url="$("$HERE/redis.sh" start)"
    print_env "$pg_url" "$bootstrap" "$s3_endpoint" "$redis_url"
    ;;
env)
    print_env "$("$HERE/postgres.sh" url)" "$("$HERE/kafka.sh" bootstrap)" \
        "$("$HERE/seaweedfs.sh" endpoint)" "$("$HERE/redis.sh" url)"
    ;;
stop)
    # each one even if another fails to stop
    rc=0
    "$HERE/redis.sh" stop || rc=1
    "$HERE/seaweedfs.sh" stop || rc=1
    "$HERE/kafka.sh" stop || rc=1
    "$HERE/postgres.sh" stop || rc=1
    exit "$rc"
    ;;
status)
    rc=0
    "$HERE/postgres.sh" status || rc=3
    "$HERE/kafka.sh" status || rc=3
    "$HERE/seaweedfs.sh" status || rc=3
    "$HERE/redis.sh" status || rc=3
    exit "$rc"
    ;;
*)
    echo "usage: $0 start|env|stop|status" >&2
    exit 2
    ;;
esac
