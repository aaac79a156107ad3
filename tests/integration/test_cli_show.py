"""``llmtap requests`` and ``llmtap request ID`` on the data of a running gateway."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import openai

from llmtap.show import usd_text
from llmtap.stores.row import RequestRow
from support.gateway import GatewayProcess

RowWaiter = Callable[..., RequestRow]
PROMPT: Any = [{"role": "user", "content": "show me in the terminal"}]


def llmtap(gateway: GatewayProcess, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "llmtap", "--data-dir", str(gateway.data_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_requests_lists_and_request_shows_bodies(
    gateway: GatewayProcess, wait_row: RowWaiter
) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=PROMPT,
        extra_headers={"Helicone-User-Id": "carol", "Helicone-Property-Screen": "cli"},
    )
    request_id = raw.headers["helicone-id"]
    row = wait_row(request_id)

    table = llmtap(gateway, "requests", "--limit", "5")
    header, first = table.splitlines()[:2]
    assert header.split()[:7] == ["time", "id", "model", "status", "in", "out", "cost"]
    assert request_id[:8] in first and "gpt-4o-mini" in first and "carol" in first
    assert row.cost_nano_usd is not None and f" {usd_text(row.cost_nano_usd)} " in first
    assert "screen=cli" in first and f" {row.input_tokens} " in first

    listed = json.loads(llmtap(gateway, "requests", "--json", "--limit", "1"))
    assert listed[0]["request_id"] == request_id

    shown = json.loads(llmtap(gateway, "request", request_id, "--json"))
    assert shown["request_body"]["messages"] == PROMPT
    assert shown["response_body"]["choices"][0]["message"]["content"]
    assert shown["output_tokens"] == row.output_tokens

    missing = subprocess.run(
        [sys.executable, "-m", "llmtap", "--data-dir", str(gateway.data_dir), "request", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "no logged call" in missing.stderr
