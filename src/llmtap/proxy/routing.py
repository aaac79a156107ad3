"""Where a call goes, and the guard that keeps llmtap from being an open relay.

Routing, first match wins:

1. ``Helicone-Target-URL`` / ``Llmtap-Target-URL``: ``<target base URL><request path>``; the host
   must be a known provider or in ``allowed_target_hosts`` (docs/architecture.md, invariant 8).
2. ``/router/<name>/<path>``: the operator-configured route ``routes[name]``.
3. ``/openai/<path>`` and ``/anthropic/<path>``: the configured base URLs.
4. Anything else: Anthropic when the call carries ``anthropic-version`` (what the Anthropic SDK
   sends), else OpenAI.

Operator-configured upstreams are trusted. A caller-named target is checked again at connect time:
every address its name resolves to must be public unless ``allow_private_targets`` is set
(``UpstreamPool`` connects to the checked address, so DNS cannot change it in between).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from llmtap.addresses import is_public_address as is_public_address
from llmtap.capture.tap import HeaderList, TapHeaders, header_value
from llmtap.settings import Settings

KNOWN_PROVIDER_HOSTS = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "api.groq.com": "groq",
    "api.together.xyz": "together",
    "api.together.ai": "together",
    "openrouter.ai": "openrouter",
    "api.deepseek.com": "deepseek",
    "api.mistral.ai": "mistral",
    "api.x.ai": "xai",
    "api.fireworks.ai": "fireworks",
    "api.perplexity.ai": "perplexity",
    "api.cohere.com": "cohere",
    "api.cohere.ai": "cohere",
    "generativelanguage.googleapis.com": "google",
    "api.cerebras.ai": "cerebras",
    "api.deepinfra.com": "deepinfra",
}
KNOWN_PROVIDER_SUFFIXES = {".openai.azure.com": "azure"}


class RouteError(Exception):
    """The call cannot be routed; answered with ``status`` in the provider's error shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Upstream:
    provider: str
    scheme: str
    host: str
    port: int
    base_path: str
    check_address: bool
    """Caller-named target: its resolved addresses must pass the private-address guard."""

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def host_header(self) -> bytes:
        """``host[:port]``, an IPv6 literal in brackets (``[2001:db8::1]:8080``)."""
        host = bracketed(self.host)
        default = 443 if self.tls else 80
        return (host if self.port == default else f"{host}:{self.port}").encode()

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host_header.decode()}"


def bracketed(host: str) -> str:
    """A host as it is written in a URL or ``Host`` header: IPv6 literals in brackets."""
    return f"[{host}]" if ":" in host else host


def parse_upstream(url: str, provider: str, check_address: bool) -> Upstream:
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise RouteError(400, "invalid_target_url", f"malformed target URL: {url!r}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RouteError(
            400, "invalid_target_url", f"target URL must be http(s)://host[/path]: {url!r}"
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise RouteError(400, "invalid_target_url", f"bad port in target URL: {url!r}") from exc
    return Upstream(
        provider=provider,
        scheme=parts.scheme,
        host=parts.hostname.lower(),
        port=port,
        base_path=parts.path.rstrip("/"),
        check_address=check_address,
    )


def known_provider(host: str) -> str | None:
    if host in KNOWN_PROVIDER_HOSTS:
        return KNOWN_PROVIDER_HOSTS[host]
    for suffix, name in KNOWN_PROVIDER_SUFFIXES.items():
        if host.endswith(suffix):
            return name
    return None


class Router:
    def __init__(self, settings: Settings) -> None:
        self._openai = parse_upstream(settings.openai_base_url, "openai", check_address=False)
        self._anthropic = parse_upstream(
            settings.anthropic_base_url, "anthropic", check_address=False
        )
        self._routes = {
            name: parse_upstream(url, name, check_address=False)
            for name, url in settings.routes.items()
        }
        self._allowed = {h.lower() for h in settings.allowed_target_hosts}
        self.allow_private = settings.allow_private_targets

    def route(self, url: bytes, tap: TapHeaders, headers: HeaderList) -> tuple[Upstream, bytes]:
        """The upstream and the path (with query) to request from it."""
        if tap.target_url:
            return self.target(tap.target_url), url
        if url.startswith(b"/router/"):
            name, _, rest = url[8:].partition(b"/")
            upstream = self._routes.get(name.decode("latin-1"))
            if upstream is None:
                raise RouteError(404, "unknown_route", f"no route named {name.decode('latin-1')!r}")
            return upstream, upstream.base_path.encode() + b"/" + rest
        if url.startswith(b"/openai/"):
            return self._openai, self._openai.base_path.encode() + url[7:]
        if url.startswith(b"/anthropic/"):
            return self._anthropic, self._anthropic.base_path.encode() + url[10:]
        if header_value(headers, b"anthropic-version") is not None:
            return self._anthropic, self._anthropic.base_path.encode() + url
        return self._openai, self._openai.base_path.encode() + url

    def target(self, target_url: str) -> Upstream:
        """A caller-named target (``Helicone-Target-URL``, a fallback): a known provider or an
        allowed host, else ``RouteError`` 403; its addresses are checked again at connect time."""
        try:
            parts = urlsplit(target_url.strip())
            port = parts.port
        except ValueError as exc:  # an unclosed "[", a port out of range or not a number
            raise RouteError(
                400,
                "invalid_target_url",
                f"target URL must be http(s)://host[/path]: {target_url!r}",
            ) from exc
        host = (parts.hostname or "").lower()
        provider = known_provider(host)
        if provider is None:
            # an IPv6 literal may be listed bare or in brackets, with a port only in brackets
            names = {host, bracketed(host)}
            if port:
                names.add(f"{bracketed(host)}:{port}")
            if not names & self._allowed:
                raise RouteError(
                    403,
                    "target_not_allowed",
                    f"target host {host!r} is not a known provider and not in "
                    "LLMTAP_ALLOWED_TARGET_HOSTS",
                )
            provider = host
        return parse_upstream(target_url, provider, check_address=True)
