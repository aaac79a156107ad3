"""Provider detection from the upstream URL, and that every id is one genai-prices knows."""

from __future__ import annotations

import pytest
from genai_prices import data_snapshot

from llmtap.consumer.handlers.providers import _HOSTS, _SUFFIXES, detect_provider


@pytest.mark.parametrize(
    ("url", "route", "name", "price_id", "match_model"),
    [
        ("https://api.openai.com/v1/chat/completions", "openai", "openai", "openai", False),
        ("https://API.Anthropic.com./v1/messages", "anthropic", "anthropic", "anthropic", False),
        ("https://api.groq.com/openai/v1/chat/completions", "groq", "groq", "groq", False),
        ("https://openrouter.ai/api/v1/chat/completions", "x", "openrouter", "openrouter", False),
        (
            "https://res1.openai.azure.com/openai/deployments/d/chat/completions",
            "",
            "azure",
            "azure",
            False,
        ),
        # a look-alike host is not the provider
        (
            "https://api.openai.com.evil.example/v1/chat/completions",
            "",
            "openai-compatible",
            None,
            True,
        ),
        ("https://evilopenai.azure.com.example/v1", "", "openai-compatible", None, True),
        # the openai route pointed at another base URL (the mock upstream, a corporate mirror)
        ("http://127.0.0.1:9999/v1/chat/completions", "openai", "openai", "openai", False),
        # so is a route named after a provider (/router/groq/...), wherever it points
        ("http://127.0.0.1:9999/openai/v1/chat/completions", "groq", "groq", "groq", False),
        ("http://10.0.0.7/openai/deployments/d/chat/completions", "azure", "azure", "azure", False),
        # self-hosted: never priced by model-name guess
        ("http://localhost:11434/v1/chat/completions", "ollama", "openai-compatible", None, False),
        ("http://10.1.2.3:8000/v1/chat/completions", "vllm", "openai-compatible", None, False),
        ("http://[::1]:8000/v1/chat/completions", "", "openai-compatible", None, False),
        ("http://vllm:8000/v1/chat/completions", "", "openai-compatible", None, False),
        ("http://gpu-box.local:8000/v1/chat/completions", "", "openai-compatible", None, False),
        ("not a url", "", "openai-compatible", None, False),
    ],
)
def test_detect_provider(
    url: str, route: str, name: str, price_id: str | None, match_model: bool
) -> None:
    provider = detect_provider(url, route)
    assert (provider.name, provider.price_id, provider.match_model) == (name, price_id, match_model)


def test_every_price_id_is_known_to_genai_prices() -> None:
    known = {p.id for p in data_snapshot.get_snapshot().providers}
    ids = {p.price_id for p in _HOSTS.values()} | {p.price_id for _, p in _SUFFIXES}
    assert ids <= known
