"""``Helicone-*`` / ``Llmtap-*`` settings sent as headers or as a dict (async-log ``meta``).

The proxy's own parser (``proxy.headers.split_headers``) does the work, so both paths read the
same names the same way (``Llmtap-X`` wins over ``Helicone-X``, properties lower-cased,
``Helicone-Request-Id`` kept only when it is a UUID).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields

from llmtap.proxy.headers import HeaderList, TapHeaders, split_headers
from llmtap.proxy.redaction import redact_headers


def as_header_list(pairs: Mapping[str, str]) -> HeaderList:
    return [(k.encode("utf-8"), v.encode("utf-8")) for k, v in pairs.items()]


def _utf8(text: str) -> str:
    # split_headers reads bytes as latin-1 (HTTP's rule); JSON and most clients send UTF-8
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def read_tap(sources: Iterable[HeaderList]) -> tuple[dict[str, str], TapHeaders]:
    """The tap settings from ``sources`` (later ones win) and the other entries, redacted."""
    headers: HeaderList = []
    for source in sources:
        headers.extend(source)
    others, tap = split_headers(headers)
    for f in fields(tap):
        value = getattr(tap, f.name)
        if isinstance(value, str):
            setattr(tap, f.name, _utf8(value))
    tap.properties = {_utf8(k): _utf8(v) for k, v in tap.properties.items()}
    return {k: _utf8(v) for k, v in redact_headers(others).items()}, tap
