"""Which provider answered a call, from the host the proxy forwarded it to.

The name is what a user sees (``groq``, ``azure``, ``openai-compatible`` ...); ``price_id`` is the
provider id genai-prices knows. A host we do not know falls back to the proxy's own route name
when that is a provider's name (``openai``/``anthropic`` base URLs pointed elsewhere, as the test
mock upstream does, or an operator route such as ``/router/groq/...``), and to
``openai-compatible`` otherwise. For an unknown public host
(a gateway in front of a vendor) genai-prices may still recognise a vendor's model name
(``gpt-4o`` -> openai); for a loopback or private host (Ollama, vLLM, LM Studio) it may not: a
self-hosted ``deepseek-r1:7b`` costs nothing at DeepSeek's prices, so it stays unpriced unless
the user's price overrides name it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    price_id: str | None
    match_model: bool = False
    """Without a ``price_id``: may genai-prices find the vendor from the model name alone?"""


OPENAI = Provider("openai", "openai")
ANTHROPIC = Provider("anthropic", "anthropic")
OPENAI_COMPATIBLE = Provider("openai-compatible", None, match_model=True)
SELF_HOSTED = Provider("openai-compatible", None, match_model=False)

# exact host -> provider; suffixes are checked after (dots included, so "evil-groq.com" misses)
_HOSTS: dict[str, Provider] = {
    "api.openai.com": OPENAI,
    "api.anthropic.com": ANTHROPIC,
    "api.groq.com": Provider("groq", "groq"),
    "api.together.xyz": Provider("together", "together"),
    "api.together.ai": Provider("together", "together"),
    "openrouter.ai": Provider("openrouter", "openrouter"),
    "api.deepseek.com": Provider("deepseek", "deepseek"),
    "api.mistral.ai": Provider("mistral", "mistral"),
    "api.x.ai": Provider("x-ai", "x-ai"),
    "api.fireworks.ai": Provider("fireworks", "fireworks"),
    "generativelanguage.googleapis.com": Provider("google", "google"),
    "api.perplexity.ai": Provider("perplexity", "perplexity"),
    "api.cerebras.ai": Provider("cerebras", "cerebras"),
    "api.cohere.ai": Provider("cohere", "cohere"),
    "api.cohere.com": Provider("cohere", "cohere"),
    "api.moonshot.ai": Provider("moonshotai", "moonshotai"),
    "api.novita.ai": Provider("novita", "novita"),
}
_SUFFIXES: tuple[tuple[str, Provider], ...] = (
    (".openai.azure.com", Provider("azure", "azure")),
    (".cognitiveservices.azure.com", Provider("azure", "azure")),
    (".services.ai.azure.com", Provider("azure", "azure")),
)
# A route named after a provider is that provider wherever it points (a mirror, an egress proxy,
# the test mock), as the openai and anthropic base URLs are: the operator named it.
_ROUTES: dict[str, Provider] = {
    **{p.name: p for p in (*_HOSTS.values(), *(p for _, p in _SUFFIXES))},
    # Helicone custom async logs (``/custom/v1/log``) rarely say where the call went; like
    # Helicone, the model name alone then picks the vendor's price.
    "custom": OPENAI_COMPATIBLE,
}


def detect_provider(target_url: str, route: str = "") -> Provider:
    """The provider behind ``target_url``; ``route`` is ``LogRecord.provider``."""
    try:
        host = (urlsplit(target_url).hostname or "").lower().rstrip(".")
    except ValueError:
        host = ""
    if (known := _HOSTS.get(host)) is not None:
        return known
    for suffix, provider in _SUFFIXES:
        if host.endswith(suffix):
            return provider
    if (known := _ROUTES.get(route.lower())) is not None:
        return known
    return SELF_HOSTED if _is_local(host) else OPENAI_COMPATIBLE


def _is_local(host: str) -> bool:
    if not host or host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "." not in host  # a bare name ("ollama", "vllm") is a container or LAN host
    return address.is_private or address.is_loopback or address.is_link_local
