#!/usr/bin/env bash
# Install what the benchmarks need, idempotently: nginx + wrk (apt), py-spy (the project venv,
# also in the dev extra), LiteLLM (pinned, its own venv) and Portkey's gateway (pinned, npm), all under
# benchmarks/.work/. Prints nothing on success when everything is already there.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
WORK="$HERE/.work"
LITELLM_VERSION="1.80.0"   # 1.82.7/1.82.8 were pulled after a supply-chain compromise: pin
PORTKEY_VERSION="1.15.2"
mkdir -p "$WORK"

need_apt=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
if [ "${#need_apt[@]}" -gt 0 ]; then
    echo "setup: apt-get install ${need_apt[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >&2
    # Debian starts the packaged nginx on :80; the benchmark runs its own instance.
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi
    if [ -f /run/nginx.pid ]; then kill "$(cat /run/nginx.pid)" 2>/dev/null || true; fi
fi

if [ ! -x "$ROOT/.venv/bin/py-spy" ]; then
    echo "setup: pip install py-spy into .venv" >&2
    "$ROOT/.venv/bin/pip" install -q "py-spy>=0.4" >&2
fi

if [ ! -x "$WORK/litellm/bin/litellm" ] \
    || [ "$("$WORK/litellm/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null)" != "$LITELLM_VERSION" ]; then
    echo "setup: LiteLLM $LITELLM_VERSION into $WORK/litellm" >&2
    python3 -m venv "$WORK/litellm" >&2 || "$ROOT/.venv/bin/python" -m venv "$WORK/litellm" >&2
    "$WORK/litellm/bin/pip" install -q "litellm[proxy]==$LITELLM_VERSION" >&2
fi

PORTKEY_MAIN="$WORK/portkey/node_modules/@portkey-ai/gateway/build/start-server.js"
if [ ! -f "$PORTKEY_MAIN" ] \
    || ! grep -q "\"version\": \"$PORTKEY_VERSION\"" "$WORK/portkey/node_modules/@portkey-ai/gateway/package.json"; then
    echo "setup: npm install @portkey-ai/gateway@$PORTKEY_VERSION into $WORK/portkey" >&2
    mkdir -p "$WORK/portkey"
    printf '{"private": true, "dependencies": {"@portkey-ai/gateway": "%s"}}\n' \
        "$PORTKEY_VERSION" > "$WORK/portkey/package.json"
    (cd "$WORK/portkey" && npm install --silent --no-audit --no-fund >&2)
fi
