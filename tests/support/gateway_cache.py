"""The gateway's response cache under test: a proxy in this process and calls that ask for it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from llmtap.testing.mock_upstream import MockUpstream

CHAT: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "tell me about llamas"}],
}
MESSAGES: dict[str, Any] = {
    "model": "claude-3-5-haiku-latest",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "tell me about alpacas"}],
}
ON = {"Helicone-Cache-Enabled": "true"}


@contextmanager
def cache_proxy(tmp_path: Path, mock: MockUpstream, **overrides: Any) -> Iterator[ThreadedProxy]:
    settings = Settings(
        data_dir=overrides.pop("data_dir", tmp_path / "data"),
        proxy_port=0,
        **{"openai_base_url": mock.url, "anthropic_base_url": mock.url, **overrides},
    )
    with ThreadedProxy(settings) as proxy:
        yield proxy


def chat(
    proxy_url: str,
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
    key: str = "sk-caller-one",
) -> httpx.Response:
    """One chat completion through the proxy, with ``headers`` (e.g. ``ON``)."""
    return httpx.post(
        proxy_url + "/v1/chat/completions",
        json=CHAT if body is None else body,
        headers={"authorization": f"Bearer {key}", **(headers or {})},
        timeout=10,
    )


def cache_status(response: httpx.Response) -> tuple[str | None, str | None]:
    return response.headers.get("helicone-cache"), response.headers.get("helicone-cache-bucket-idx")
