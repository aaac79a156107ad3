"""``llmtap webhooks add|list|rm``: the local administrator's webhook commands.

Like ``llmtap keys`` they talk to the records store directly, for one organization (the default
one unless ``--org``); the same checks as ``POST /v1/webhooks`` apply (URL and address rule,
sample rate, filters, the per-organization limit). The signing secret is printed once.
"""

from __future__ import annotations

import json
import sys

from llmtap.api.integration_rules import (
    SettingRefused,
    WebhookLimitReached,
    check_room_for_webhook,
    checked_webhook,
    filters_from_pairs,
)
from llmtap.errors import LlmtapError
from llmtap.settings import Settings


def add_webhook(
    settings: Settings,
    *,
    org_id: str | None,
    url: str,
    sample_rate: float,
    filters: list[str],
) -> int:
    from llmtap.stores.factory import open_records_store

    try:
        new = checked_webhook(
            url,
            sample_rate,
            filters_from_pairs(filters),
            allow_private=settings.outbox_allow_private_targets,
        )
    except SettingRefused as exc:
        print(f"cannot add the webhook: {exc}", file=sys.stderr)
        return 2
    store = open_records_store(settings.records_url)
    try:
        org = org_id or store.default_org_id()
        check_room_for_webhook(store, org, settings.webhooks_max_per_org)
        webhook_id, secret = store.integrations.create_webhook(
            org, new.url, new.sample_rate, new.property_filters
        )
    except WebhookLimitReached as exc:
        print(f"cannot add the webhook: {exc} (LLMTAP_WEBHOOKS_MAX_PER_ORG)", file=sys.stderr)
        return 1
    except LlmtapError as exc:
        print(f"cannot add the webhook: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"webhook:        {webhook_id}\norganization:   {org}\nsigning secret: {secret}")
    print("The signing secret is shown once.", file=sys.stderr)
    return 0


def list_webhooks(settings: Settings, *, org_id: str | None, as_json: bool) -> int:
    from llmtap.stores.factory import open_records_store

    store = open_records_store(settings.records_url)
    try:
        org = org_id or store.default_org_id()
        hooks = store.integrations.webhooks(org)
        pending = store.outbox.pending_counts(org)
    finally:
        store.close()
    if as_json:
        rows = [
            {
                "id": w.target.id,
                "url": w.target.url,
                "sample_rate": w.rule.sample_rate,
                "property_filters": w.rule.property_filters,
                "paused": w.target.paused,
                "consecutive_failures": w.target.consecutive_failures,
                "last_error": w.target.last_error,
                "pending_deliveries": pending.get(w.target.id, 0),
            }
            for w in hooks
        ]
        print(json.dumps(rows, indent=2))
        return 0
    if not hooks:
        print("no webhooks")
        return 0
    for w in hooks:
        t = w.target
        state = "paused" if t.paused else "failing" if t.consecutive_failures else "active"
        filters = ",".join(f"{k}={v}" for k, v in w.rule.property_filters.items()) or "-"
        print(
            f"{t.id}  {t.url}  sample={w.rule.sample_rate:g}%  filters={filters}"
            f"  {state}  pending={pending.get(t.id, 0)}"
        )
    return 0


def remove_webhook(settings: Settings, *, org_id: str | None, webhook_id: str) -> int:
    from llmtap.stores.factory import open_records_store

    store = open_records_store(settings.records_url)
    try:
        org = org_id or store.default_org_id()
        found = store.integrations.delete_webhook(org, webhook_id)
    finally:
        store.close()
    if not found:
        print(f"no webhook {webhook_id} in organization {org}", file=sys.stderr)
        return 1
    print(f"deleted {webhook_id}")
    return 0
