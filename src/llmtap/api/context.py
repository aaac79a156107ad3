"""What the API's routes share, created once at start and kept on ``app.state.llmtap``.

Nothing here is module-level: ``create_app`` receives an ``ApiContext`` and routes reach it
through the request. The caller's organization is a dependency every data route takes, so no
route can read without one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, Request

from llmtap.alerts.rules import AlertLimits
from llmtap.api.auth import KeyResolver
from llmtap.api.filters import FilterLimits
from llmtap.api.ingest_http import Ingestion
from llmtap.api.metrics_query import MetricsSource
from llmtap.api.query_gate import QueryGate
from llmtap.api.search import RequestSearch
from llmtap.stores.records.store import RecordsStore


@dataclass(frozen=True, slots=True)
class ScoreLimits:
    """Bounds on ``POST /v1/request/{id}/score`` (settings ``scores_max_*``)."""

    max_per_call: int = 100
    max_pending: int = 100_000


@dataclass
class ApiContext:
    search: RequestSearch
    keys: KeyResolver
    metrics: MetricsSource | None
    """``None`` when no analytics store is configured: metrics routes answer 503."""
    limits: FilterLimits
    """How big a filter may be (settings ``api_filter_max_*``)."""
    gate: QueryGate
    """Bounds the searches and metrics queries running at once (``api_query_concurrency``)."""
    ingestion: Ingestion | None = None
    """Async-log and OTLP ingestion (``api/ingest.py``); ``None``: those routes are not mounted."""
    records: RecordsStore | None = None
    """The records store the search reads: the dashboard keeps its sessions there, and reads
    organizations and keys (``None``: no dashboard sign-in)."""
    score_limits: ScoreLimits = ScoreLimits()
    outbox_allow_private: bool = False
    """Webhook and PostHog URLs may name private addresses (``outbox_allow_private_targets``)."""
    webhooks_max_per_org: int = 20
    """``webhooks_max_per_org``."""
    alert_limits: AlertLimits = field(default_factory=AlertLimits)
    """Bounds on alert rules (settings ``alerts_*``)."""


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.llmtap
    return ctx


def caller_org(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer sk-llmtap-...")] = None,
    helicone_auth: Annotated[
        str | None, Header(description="Bearer sk-llmtap-... (Helicone-style)")
    ] = None,
) -> str:
    """The organization of the key sent; 401 (``Unauthorized``) otherwise."""
    return context(request).keys.org_for(authorization, helicone_auth)


Org = Annotated[str, Depends(caller_org)]
Ctx = Annotated[ApiContext, Depends(context)]
