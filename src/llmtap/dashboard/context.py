"""What the dashboard's pages share, created once by ``install_dashboard`` and kept on
``app.state.dashboard``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from llmtap.api.context import ApiContext
from llmtap.dashboard.key_reveal import NewKey, NewWebhook, Reveals
from llmtap.dashboard.login_limit import LoginLimiter
from llmtap.dashboard.render import Pages
from llmtap.stores.records.store import RecordsStore


@dataclass
class DashboardContext:
    api: ApiContext
    """The API's services: search, metrics, keys, the query gate, filter limits."""
    records: RecordsStore
    pages: Pages
    login_limiter: LoginLimiter
    session_ttl_s: float
    refresh_s: int
    key_reveals: Reveals[NewKey]
    """New keys waiting for their one showing (``keys.py``)."""
    webhook_reveals: Reveals[NewWebhook]
    """New webhooks' signing secrets waiting for their one showing (``webhook_new.py``)."""


def dashboard(request: Request) -> DashboardContext:
    ctx: DashboardContext = request.app.state.dashboard
    return ctx
