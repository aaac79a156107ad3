"""Dashboard sessions: one row per signed-in browser, shared by every API process.

The browser holds a random 32-byte token in a cookie; the table keeps only its sha256, so a copy
of the database does not sign anyone in. A session also remembers the hash of the key it signed
in with: the dashboard re-resolves it through the key directory on every request, so revoking
the key ends the session (``llmtap.dashboard.auth``).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from llmtap.stores.records.engine import translated
from llmtap.stores.records.schema import dashboard_sessions

TOUCH_EVERY = timedelta(minutes=1)
"""``last_seen`` is written at most this often per session (a page view is not a write)."""


@dataclass(frozen=True, slots=True)
class DashboardSession:
    token_hash: str
    key_hash: str
    org_id: str
    csrf_token: str
    created: datetime
    expires: datetime
    last_seen: datetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


class SessionTable:
    """The queries of ``dashboard_sessions``, on an engine its owner opened and closes."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def create(self, key_hash: str, org_id: str, ttl_s: float) -> tuple[str, DashboardSession]:
        """A new session: ``(the cookie's token, the row)``. Expired rows are swept first, so
        the table holds about as many rows as there are live sessions."""
        token = secrets.token_urlsafe(32)
        now = _now()
        session = DashboardSession(
            token_hash=token_hash(token),
            key_hash=key_hash,
            org_id=org_id,
            csrf_token=secrets.token_urlsafe(32),
            created=now,
            expires=now + timedelta(seconds=ttl_s),
            last_seen=now,
        )
        with translated("create dashboard session"), self._engine.begin() as conn:
            conn.execute(sa.delete(dashboard_sessions).where(dashboard_sessions.c.expires <= now))
            conn.execute(
                dashboard_sessions.insert().values(
                    token_hash=session.token_hash,
                    key_hash=session.key_hash,
                    org_id=session.org_id,
                    csrf_token=session.csrf_token,
                    created=session.created,
                    expires=session.expires,
                    last_seen=session.last_seen,
                )
            )
        return token, session

    def get(self, token: str) -> DashboardSession | None:
        """The live session of this cookie token (``None``: unknown or expired); notes that it
        was seen, at most once per ``TOUCH_EVERY``."""
        hashed = token_hash(token)
        now = _now()
        query = sa.select(dashboard_sessions).where(
            dashboard_sessions.c.token_hash == hashed, dashboard_sessions.c.expires > now
        )
        with translated("read dashboard session"), self._engine.connect() as conn:
            found = conn.execute(query).mappings().first()
        if found is None:
            return None
        session = DashboardSession(**dict(found))
        if now - session.last_seen >= TOUCH_EVERY:
            with translated("touch dashboard session"), self._engine.begin() as conn:
                conn.execute(
                    sa.update(dashboard_sessions)
                    .where(dashboard_sessions.c.token_hash == hashed)
                    .values(last_seen=now)
                )
        return session

    def delete(self, token: str) -> None:
        with translated("delete dashboard session"), self._engine.begin() as conn:
            conn.execute(
                sa.delete(dashboard_sessions).where(
                    dashboard_sessions.c.token_hash == token_hash(token)
                )
            )

    def delete_for_key(self, key_hash: str) -> int:
        """End every session signed in with this key (its key was revoked); how many."""
        with translated("delete dashboard sessions"), self._engine.begin() as conn:
            result = conn.execute(
                sa.delete(dashboard_sessions).where(dashboard_sessions.c.key_hash == key_hash)
            )
        return int(result.rowcount or 0)
