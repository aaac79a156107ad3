"""``llmtap keys create|list|revoke`` and ``llmtap migrate``: the local administrator's commands.

They talk to the records store directly (whoever can read the data directory or the database URL
is the administrator); keys are printed once, at creation, and only their hash is kept.
"""

from __future__ import annotations

import json
import sys

from llmtap.errors import LlmtapError
from llmtap.settings import Settings


def create_key(
    settings: Settings,
    *,
    org_id: str | None,
    new_org: str | None,
    name: str,
    rate_limit: str | None = None,
) -> int:
    from llmtap.stores.factory import open_records_store

    store = open_records_store(settings.records_url)
    try:
        if new_org is not None:
            org_id = store.create_org(new_org)
        elif org_id is None:
            org_id = store.default_org_id()
        key_id, key = store.create_key(org_id, name, rate_limit)
    except LlmtapError as exc:
        print(f"cannot create the key: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    limit = f"rate limit:   {rate_limit}\n" if rate_limit else ""
    print(f"organization: {org_id}\nkey id:       {key_id}\n{limit}\n    {key}\n")
    print("The key is shown once; only its hash is stored.", file=sys.stderr)
    return 0


def list_keys(settings: Settings, *, org_id: str | None, as_json: bool) -> int:
    from llmtap.stores.factory import open_records_store

    store = open_records_store(settings.records_url)
    try:
        orgs = {o.id: o.name for o in store.list_orgs()}
        wanted = [org_id] if org_id is not None else list(orgs)
        keys = [k for org in wanted for k in store.list_keys(org)]
    finally:
        store.close()
    if as_json:
        rows = [
            {
                "id": k.id,
                "org_id": k.org_id,
                "org_name": orgs.get(k.org_id),
                "name": k.name,
                "prefix": k.prefix,
                "created": k.created.isoformat(),
                "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
                "rate_limit": k.rate_limit,
            }
            for k in keys
        ]
        print(json.dumps(rows, indent=2))
        return 0
    if not keys:
        print("no keys")
        return 0
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        limit = f"  rate-limit={k.rate_limit}" if k.rate_limit else ""
        print(
            f"{k.id}  {k.prefix}…  org={k.org_id} ({orgs.get(k.org_id, '?')})"
            f"  name={k.name}  created={k.created:%Y-%m-%d %H:%M}{limit}  {state}"
        )
    return 0


def revoke_key(settings: Settings, key_id: str) -> int:
    from llmtap.stores.factory import open_records_store

    store = open_records_store(settings.records_url)
    try:
        found = store.revoke_key(key_id)
    finally:
        store.close()
    if not found:
        print(f"no key {key_id!r}", file=sys.stderr)
        return 1
    print(f"revoked {key_id} (the API refuses it within a few seconds)")
    return 0


def migrate(settings: Settings) -> int:
    """Bring the records schema to the latest revision and create the analytics table."""
    from llmtap.stores.factory import analytics_from_records, open_analytics_store
    from llmtap.stores.records import migrate as migrate_records

    try:
        migrate_records(settings.records_url)
        print("records store: schema up to date")
        if analytics_from_records(settings):
            print("analytics: computed from the records store (no table of their own)")
            return 0
        analytics = open_analytics_store(settings.analytics_url)
        analytics.close()
        print("analytics store: table ready")
    except LlmtapError as exc:
        print(f"migration failed: {exc}", file=sys.stderr)
        return 1
    return 0
