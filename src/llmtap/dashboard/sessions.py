"""``/sessions``: the sessions of the range (name, requests, cost, duration, first/last seen),
sortable and paged by keyset, from the analytics store. ``/sessions/<id>``: one session as a
tree of its ``Helicone-Session-Path`` values (``/plan``, ``/plan/search``, ...) with each node's
calls, latency, tokens and cost, and a timeline of its calls.

A session may hold thousands of calls: the figures per path cover all of them (one GROUP BY in
the records store), the calls listed and drawn are the first ``MAX_CALLS`` (with a notice). A
session id of another organization is answered like a missing one (404).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from llmtap.api.query_gate import QueryBusy
from llmtap.api.rows import nano_to_usd
from llmtap.dashboard.auth import Signed
from llmtap.dashboard.context import dashboard
from llmtap.dashboard.group_page import group_list_page
from llmtap.errors import StoreError
from llmtap.stores.records.session_calls import PathFigures
from llmtap.stores.row import RequestRow

router = APIRouter(include_in_schema=False)

MAX_CALLS = 2000
"""Calls of one session listed and drawn at most (the per-path figures count every call)."""
MAX_PATH_DEPTH = 32
"""Segments of a session path kept as tree levels; deeper ones join the last level."""
MAX_LANES = 200
"""Rows of the timeline (one per path); the calls of further paths share the last one."""
LANE_PX = 16
COLUMNS = (
    (None, "Session"),
    ("requests", "Requests"),
    ("errors", "Errors"),
    ("cost", "Cost"),
    ("tokens", "Tokens"),
    ("duration", "Duration"),
    ("first_seen", "First seen"),
    ("last_seen", "Last seen"),
)


@router.get("/sessions")
def sessions_page(request: Request, signed: Signed) -> Response:
    return group_list_page(request, signed, "session", COLUMNS, "sessions")


@dataclass
class Node:
    """One level of the path tree: its own calls' figures and its subtree's."""

    name: str
    path: str
    own: PathFigures | None = None
    children: dict[str, Node] = field(default_factory=dict)
    calls: list[RequestRow] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    cost_nano_usd: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms_sum: float = 0.0
    first_unix_ms: float = float("inf")
    end_unix_ms: float = 0.0

    def add(self, figures: PathFigures) -> None:
        self.requests += figures.requests
        self.errors += figures.errors
        self.cost_nano_usd += figures.cost_nano_usd
        self.input_tokens += figures.input_tokens
        self.output_tokens += figures.output_tokens
        self.latency_ms_sum += figures.latency_ms_sum
        self.first_unix_ms = min(self.first_unix_ms, figures.first_unix_ms)
        self.end_unix_ms = max(self.end_unix_ms, figures.end_unix_ms)

    @property
    def kids(self) -> list[Node]:
        return sorted(self.children.values(), key=lambda n: (n.first_unix_ms, n.name))


def segments(path: str) -> list[str]:
    parts = [p for p in path.strip().split("/") if p]
    if len(parts) > MAX_PATH_DEPTH:
        parts = [*parts[: MAX_PATH_DEPTH - 1], "/".join(parts[MAX_PATH_DEPTH - 1 :])]
    return parts


def build_tree(paths: list[PathFigures], calls: list[RequestRow]) -> Node:
    root = Node(name="", path="/")
    nodes: dict[str, Node] = {}
    for figures in paths:
        node = root
        root.add(figures)
        for part in segments(figures.path):
            node = node.children.setdefault(
                part, Node(name=part, path=f"{node.path.rstrip('/')}/{part}")
            )
            node.add(figures)
        node.own = figures
        nodes[figures.path] = node
    for call in calls:
        found = nodes.get(call.session_path or "")
        if found is not None:
            found.calls.append(call)
    return root


def timeline(calls: list[RequestRow]) -> dict[str, Any]:
    """Bars by start time and latency, one lane per path (in order of first call)."""
    if not calls:
        return {"lanes": [], "bars": [], "span_ms": 0, "height": 0}
    start = min(c.created_unix_ms for c in calls)
    end = max(c.created_unix_ms + c.latency_ms for c in calls)
    span = max(end - start, 1.0)
    lanes: dict[str, int] = {}
    bars = []
    for call in calls:
        path = call.session_path or ""
        lane = lanes.get(path)
        if lane is None:
            lane = min(len(lanes), MAX_LANES - 1)
            if len(lanes) < MAX_LANES:
                lanes[path] = lane
        x = (call.created_unix_ms - start) / span * 1000.0
        bars.append(
            {
                "id": call.request_id,
                "x": round(x, 2),
                "w": round(max(call.latency_ms / span * 1000.0, 0.6), 2),
                "y": lane * LANE_PX + 2,
                "err": call.status >= 400 or call.status == 0 or call.error is not None,
                "call": call,
            }
        )
    labels = sorted(lanes.items(), key=lambda item: item[1])
    return {
        "lanes": [path or "(no path)" for path, _ in labels],
        "bars": bars,
        "span_ms": end - start,
        "height": len(labels) * LANE_PX,
        "lane_px": LANE_PX,
    }


def _not_found(request: Request, signed: Signed, what: str, status: int = 404) -> Response:
    return dashboard(request).pages.render(
        request,
        "not_found.html",
        {"viewer": signed, "page": "sessions", "what": what},
        status_code=status,
    )


@router.get("/sessions/{session_id:path}")
def session_view(session_id: str, request: Request, signed: Signed) -> Response:
    ctx = dashboard(request)
    if not session_id or len(session_id) > 1024 or "\x00" in session_id:
        return _not_found(request, signed, "No session with this id.")

    try:
        with ctx.api.gate.slot():
            paths = ctx.records.session_paths(signed.org_id, session_id)
            calls = ctx.records.session_calls(signed.org_id, session_id, MAX_CALLS + 1)
    except QueryBusy as exc:
        return _not_found(request, signed, f"{exc}.", 503)
    except StoreError:
        return _not_found(request, signed, "The records store did not answer; try again.", 503)
    if not paths:
        return _not_found(request, signed, "No session with this id.")
    capped = len(calls) > MAX_CALLS
    calls = calls[:MAX_CALLS]
    tree = build_tree(paths, calls)
    names = [c.session_name for c in calls if c.session_name]
    context = {
        "viewer": signed,
        "page": "sessions",
        "session_id": session_id,
        "name": names[-1] if names else "",
        "tree": tree,
        "timeline": timeline(calls),
        "capped": capped,
        "max_calls": MAX_CALLS,
        "shown": len(calls),
        "cost_usd": nano_to_usd,
        "users": sorted({c.user_id for c in calls if c.user_id})[:20],
    }
    return ctx.pages.render(request, "session_view.html", context)
