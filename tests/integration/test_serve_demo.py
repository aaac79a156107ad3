"""``llmtap serve --demo``: a newcomer without a provider key gets a live gateway with data in it.

The real supervisor runs the mock upstream, the proxy, the backend and the demo's traffic as its
children; the test only reads the API with the key ``serve`` printed and stops it with SIGTERM.
The configured provider URLs point at TEST-NET (192.0.2.1, never routed): ``--demo`` must
replace them, so every stored call went to the mock on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from support.gateway import GatewayProcess
from support.probes import wait_for

UNREACHABLE = "http://192.0.2.1:9"
_MOCK_LINE = re.compile(r"to the mock upstream at (http://127\.0\.0\.1:\d+)")


def api_rows(gateway: GatewayProcess, key: str) -> list[dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.api_port, timeout=10)
    try:
        conn.request("GET", "/v1/requests?limit=1000", headers={"Authorization": f"Bearer {key}"})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 200, body[:500]
    rows: list[dict[str, Any]] = json.loads(body)["data"]
    return rows


def looks_alive(rows: list[dict[str, Any]]) -> bool:
    """Enough of every kind of call for each dashboard page to have something to show."""
    return (
        len(rows) >= 30
        and len({r["provider"] for r in rows}) >= 2
        and len({r["model"] for r in rows}) >= 2
        and len({r["user_id"] for r in rows if r["user_id"]}) >= 2
        and any(r["session_id"] and "/" in r["session_path"][1:] for r in rows)
        and any(r["properties"].get("feature") and r["properties"].get("env") for r in rows)
        and any(r["streamed"] and r["status"] == 200 for r in rows)
        and any(r["status"] >= 400 for r in rows)
    )


def test_serve_demo_fills_the_stores_through_the_proxy_and_talks_only_to_loopback(
    tmp_path: Path,
) -> None:
    env = {
        "LLMTAP_OPENAI_BASE_URL": UNREACHABLE,
        "LLMTAP_ANTHROPIC_BASE_URL": UNREACHABLE,
        "LLMTAP_ROUTES": json.dumps({"groq": UNREACHABLE}),
        "LLMTAP_BATCH_MAX_WAIT_S": "0.05",
    }
    gateway = GatewayProcess(tmp_path / "data", env=env)
    gateway.args += ["--demo", "--demo-calls-per-s", "20"]
    with gateway:
        key = gateway.first_key()
        assert key is not None
        output = gateway.output()
        assert "DEMO MODE" in output
        found = _MOCK_LINE.search(output)
        assert found is not None, output[-3000:]
        mock_url = found.group(1)
        gateway.wait_api()
        rows = wait_for(
            lambda: (r := api_rows(gateway, key)) and looks_alive(r) and r,
            timeout_s=90,
            interval_s=0.5,
            what="demo traffic of every kind in the API",
        )
        code = gateway.stop()
    output = gateway.output()
    assert code == 0, output[-4000:]
    assert "demo traffic stopped" in output

    # every call the proxy forwarded went to the mock: not to the configured (TEST-NET) URLs,
    # and never to a real provider
    targets = {urlsplit(r["target_url"]) for r in rows}
    assert {f"{t.scheme}://{t.netloc}" for t in targets} == {mock_url}
    assert {r["provider"] for r in rows} <= {"openai", "anthropic", "groq", "mistral"}
    assert all(r["error"] is None for r in rows if r["status"] == 200)
    assert any(r["cost_nano_usd"] for r in rows), "demo models are priced"

    # the supervisor stopped its mock upstream too
    mock_port = urlsplit(mock_url).port
    assert mock_port is not None
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", mock_port)) != 0
