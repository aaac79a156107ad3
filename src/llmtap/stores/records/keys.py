"""Organizations and their llmtap API keys.

A key is shown once, when it is created, and stored only as its sha256 (``llmtap.keys``); the
first characters are kept as ``prefix`` so people can tell their keys apart in a listing.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from llmtap.errors import StoreError
from llmtap.keys import DEFAULT_ORG_ID, KeyGrant, hash_key, new_key
from llmtap.stores.records.engine import translated
from llmtap.stores.records.schema import api_keys, organizations

DEFAULT_ORG_NAME = "default"
_PREFIX_CHARS = 14  # "sk-llmtap-" and four random characters


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """What a key listing shows: never the key, never its hash."""

    id: str
    org_id: str
    name: str
    prefix: str
    created: datetime
    revoked_at: datetime | None
    rate_limit: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class OrgInfo:
    id: str
    name: str
    created: datetime


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(12)}"


def default_org_id(engine: sa.Engine) -> str:
    """The organization of single-tenant installs, created the first time it is asked for."""
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    # insert-if-missing instead of read-then-insert: two processes may ask at the same moment
    stmt = (
        insert(organizations)
        .values(id=DEFAULT_ORG_ID, name=DEFAULT_ORG_NAME, created=_now())
        .on_conflict_do_nothing(index_elements=["id"])
    )
    with translated("create default organization"), engine.begin() as conn:
        conn.execute(stmt)
    return DEFAULT_ORG_ID


def create_org(engine: sa.Engine, name: str) -> str:
    org_id = _new_id("org")
    with translated("create organization"), engine.begin() as conn:
        conn.execute(organizations.insert().values(id=org_id, name=name, created=_now()))
    return org_id


def list_orgs(engine: sa.Engine) -> list[OrgInfo]:
    query = sa.select(organizations).order_by(organizations.c.created, organizations.c.id)
    with translated("list organizations"), engine.connect() as conn:
        return [OrgInfo(id=r.id, name=r.name, created=r.created) for r in conn.execute(query)]


def org_name(engine: sa.Engine, org_id: str) -> str | None:
    query = sa.select(organizations.c.name).where(organizations.c.id == org_id)
    with translated("read organization"), engine.connect() as conn:
        name: str | None = conn.execute(query).scalar_one_or_none()
        return name


def create_key(
    engine: sa.Engine, org_id: str, name: str, rate_limit: str | None = None
) -> tuple[str, str]:
    """A new key for ``org_id``: ``(key id, plaintext key)``; the plaintext is not kept.
    ``rate_limit`` is stored as given: the caller has checked it."""
    key = new_key()
    key_id = _new_id("key")
    values = {
        "id": key_id,
        "org_id": org_id,
        "name": name,
        "key_hash": hash_key(key),
        "prefix": key[:_PREFIX_CHARS],
        "created": _now(),
        "revoked_at": None,
        "rate_limit": rate_limit,
    }
    with translated("create key"), engine.begin() as conn:
        exists = conn.execute(
            sa.select(organizations.c.id).where(organizations.c.id == org_id)
        ).first()
        if exists is None:
            raise StoreError(f"no organization {org_id!r}")
        conn.execute(api_keys.insert().values(values))
    return key_id, key


def list_keys(engine: sa.Engine, org_id: str) -> list[ApiKeyInfo]:
    """The organization's keys, revoked ones included, oldest first."""
    query = (
        sa.select(
            api_keys.c.id,
            api_keys.c.org_id,
            api_keys.c.name,
            api_keys.c.prefix,
            api_keys.c.created,
            api_keys.c.revoked_at,
            api_keys.c.rate_limit,
        )
        .where(api_keys.c.org_id == org_id)
        .order_by(api_keys.c.created, api_keys.c.id)
    )
    with translated("list keys"), engine.connect() as conn:
        return [
            ApiKeyInfo(
                id=r.id,
                org_id=r.org_id,
                name=r.name,
                prefix=r.prefix,
                created=r.created,
                revoked_at=r.revoked_at,
                rate_limit=r.rate_limit,
            )
            for r in conn.execute(query)
        ]


def revoke_key(engine: sa.Engine, key_id: str) -> bool:
    """Revoke a key; ``False`` when there is no such key. Revoking twice keeps the first time."""
    stmt = (
        sa.update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=_now())
    )
    with translated("revoke key"), engine.begin() as conn:
        if conn.execute(stmt).rowcount:
            return True
        found = conn.execute(sa.select(api_keys.c.id).where(api_keys.c.id == key_id)).first()
        return found is not None


def revoke_org_key(engine: sa.Engine, org_id: str, key_id: str) -> str | None:
    """Revoke ``org_id``'s key ``key_id``: its hash (to end its sessions), or ``None`` when the
    organization has no such key. A key of another organization is answered like a missing one
    and left as it is. Revoking twice keeps the first time."""
    owned = sa.and_(api_keys.c.id == key_id, api_keys.c.org_id == org_id)
    with translated("revoke key"), engine.begin() as conn:
        key_hash: str | None = conn.execute(
            sa.select(api_keys.c.key_hash).where(owned)
        ).scalar_one_or_none()
        if key_hash is not None:
            conn.execute(
                sa.update(api_keys)
                .where(owned, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
    return key_hash


def org_for_key_hash(engine: sa.Engine, key_hash: str) -> str | None:
    """The organization owning the (unrevoked) key with this hash, else ``None``."""
    query = sa.select(api_keys.c.org_id).where(
        api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None)
    )
    with translated("resolve key"), engine.connect() as conn:
        org: str | None = conn.execute(query).scalar_one_or_none()
        return org


def grant_for_key_hash(engine: sa.Engine, key_hash: str) -> KeyGrant | None:
    """The organization and rate limit of the (unrevoked) key with this hash, else ``None``."""
    query = sa.select(api_keys.c.org_id, api_keys.c.rate_limit).where(
        api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None)
    )
    with translated("resolve key"), engine.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else KeyGrant(row.org_id, row.rate_limit)
