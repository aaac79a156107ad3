"""One session's calls for the dashboard's session view: its calls in start order (at most a
given number), and figures per ``session_path`` over all of them.

A session may hold thousands of calls: the page renders a bounded number and the per-path
figures, which one GROUP BY computes over every call of the session. Both read through the
``(org_id, session_id, created_unix_ms)`` index, the organization first.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from llmtap.stores.records.engine import translated
from llmtap.stores.records.schema import requests
from llmtap.stores.records.upsert import row_from_mapping
from llmtap.stores.row import RequestRow


@dataclass(frozen=True, slots=True)
class PathFigures:
    path: str
    """The call's ``session_path`` (``""`` when it had none)."""
    requests: int
    errors: int
    cost_nano_usd: int
    priced: int
    input_tokens: int
    output_tokens: int
    latency_ms_sum: float
    latency_ms_max: float
    first_unix_ms: float
    end_unix_ms: float
    """The latest end (start + latency) of its calls."""


def session_calls(engine: sa.Engine, org_id: str, session_id: str, limit: int) -> list[RequestRow]:
    query = (
        sa.select(requests)
        .where(requests.c.org_id == org_id, requests.c.session_id == session_id)
        .order_by(requests.c.created_unix_ms.asc(), requests.c.request_id.asc())
        .limit(max(0, limit))
    )
    with translated("read session calls"), engine.connect() as conn:
        return [row_from_mapping(m) for m in conn.execute(query).mappings()]


def session_paths(engine: sa.Engine, org_id: str, session_id: str) -> list[PathFigures]:
    c = requests.c
    failed = sa.or_(c.status >= 400, c.status == 0, c.error.is_not(None))
    path = sa.func.coalesce(c.session_path, "")
    query = (
        sa.select(
            path.label("path"),
            sa.func.count().label("requests"),
            sa.func.sum(sa.case((failed, 1), else_=0)).label("errors"),
            sa.func.coalesce(sa.func.sum(c.cost_nano_usd), 0).label("cost"),
            sa.func.count(c.cost_nano_usd).label("priced"),
            sa.func.coalesce(sa.func.sum(c.input_tokens), 0).label("input_tokens"),
            sa.func.coalesce(sa.func.sum(c.output_tokens), 0).label("output_tokens"),
            sa.func.sum(c.latency_ms).label("latency_sum"),
            sa.func.max(c.latency_ms).label("latency_max"),
            sa.func.min(c.created_unix_ms).label("first"),
            sa.func.max(c.created_unix_ms + c.latency_ms).label("end"),
        )
        .where(c.org_id == org_id, c.session_id == session_id)
        .group_by(path)
        .order_by(path)
    )
    with translated("read session paths"), engine.connect() as conn:
        return [
            PathFigures(
                path=str(r.path),
                requests=int(r.requests),
                errors=int(r.errors or 0),
                cost_nano_usd=int(r.cost or 0),
                priced=int(r.priced or 0),
                input_tokens=int(r.input_tokens or 0),
                output_tokens=int(r.output_tokens or 0),
                latency_ms_sum=float(r.latency_sum or 0.0),
                latency_ms_max=float(r.latency_max or 0.0),
                first_unix_ms=float(r.first),
                end_unix_ms=float(r.end),
            )
            for r in conn.execute(query)
        ]
