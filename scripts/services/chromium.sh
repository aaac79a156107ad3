#!/usr/bin/env bash
# Chromium for the browser tests (tests/browser/): Debian's `chromium`, driven by Playwright from
# PyPI. Playwright's own browser download (`playwright install`) is not used: the tests launch
# whatever `chromium` is on PATH.
#
#   scripts/services/chromium.sh ensure   install it if missing (quiet when it is there)
#   scripts/services/chromium.sh path     print the binary's path (exit 3 if missing)
#
# Idempotent; `apt-get update` runs only when the package lists do not know chromium yet.
set -euo pipefail
# shellcheck disable=SC2034  # read by lib.sh's say()
SERVICE=chromium
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# no candidate: the lists were never fetched (a fresh container) or are too old to name it
known_to_apt() {
    apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'
}

# apt_quiet ARGS... — apt-get with its chatter in the log (printed only when it fails)
apt_quiet() {
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -qq "$@" >>"$LOG" 2>&1 || {
        log_tail "$LOG"
        die "apt-get $1 failed"
    }
}

ensure() {
    if command -v chromium >/dev/null; then
        return 0
    fi
    command -v apt-get >/dev/null || die "apt-get not found; install chromium by hand"
    LOG="$(svc_dir chromium)/install.log"
    if ! known_to_apt; then
        say "apt-get update"
        apt_quiet update
    fi
    say "apt-get install chromium (log: $LOG)"
    # fonts-liberation: metric-compatible fonts, so pages and screenshots look the same everywhere
    apt_quiet install -y --no-install-recommends chromium fonts-liberation
    command -v chromium >/dev/null || die "chromium still missing after apt-get install"
}

case "${1:-}" in
ensure) ensure ;;
path) command -v chromium || exit 3 ;;
*)
    echo "usage: $0 ensure|path" >&2
    exit 2
    ;;
esac
