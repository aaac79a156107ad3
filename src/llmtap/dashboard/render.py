"""Jinja2 for the dashboard: autoescape on for every template, and the filters pages share.

Data for the filter builder goes into a ``<script type="application/json">`` block through
``json_block``, which escapes ``<``, ``>``, ``&`` and the JavaScript line separators as
``\\uXXXX``: a ``</script>`` inside logged data cannot end the block. Data inside a fragment that
htmx swaps in (the charts) goes into a ``data-`` attribute through ``json_attr`` instead: htmx
(``allowScriptTags: false``) drops every ``<script>`` of a swapped fragment, JSON ones included.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse

from llmtap.dashboard.static_files import StaticFiles

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
_JSON_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}
PAGE_HEADERS = {"Cache-Control": "no-store", "Vary": "Cookie, HX-Request"}


def json_block(value: Any) -> Markup:
    """``value`` as JSON safe inside a ``<script type="application/json">`` element."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Markup(text.translate(_JSON_ESCAPES))


def json_attr(value: Any) -> str:
    """``value`` as JSON for an attribute: a plain string, so autoescape escapes it there."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def fmt_cost(usd: float | None) -> str:
    if usd is None:
        return "—"
    if usd == 0:
        return "$0"
    if abs(usd) < 0.01:
        text = f"${usd:.6f}".rstrip("0")
        # an embedding of a few tokens costs less than a millionth of a dollar: never "$0."
        return "<$0.000001" if text.endswith(".") else text
    return f"${usd:,.2f}"


def fmt_ms(ms: float | None) -> str:
    if ms is None or (isinstance(ms, float) and math.isnan(ms)):
        return "—"
    if ms >= 10_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms:,.0f} ms"


def fmt_int(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def fmt_pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def fmt_time(unix_ms: float | None) -> str:
    if unix_ms is None:
        return "—"
    moment = datetime.fromtimestamp(unix_ms / 1000.0, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def clip(text: object, limit: int = 80) -> str:
    value = "" if text is None else str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


class Pages:
    """The template environment and what every page needs (the static URLs)."""

    def __init__(self, static: StaticFiles) -> None:
        self.static = static
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            json_block=json_block,
            json_attr=json_attr,
            cost=fmt_cost,
            ms=fmt_ms,
            num=fmt_int,
            pct=fmt_pct,
            time=fmt_time,
            clip=clip,
        )
        self.env.globals["static"] = static.url

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any],
        *,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        html = self.env.get_template(template).render(request=request, **context)
        return HTMLResponse(
            html, status_code=status_code, headers={**PAGE_HEADERS, **(headers or {})}
        )
