"""``llmtap alerts add|list|rm``: the local administrator's alert commands.

Like ``llmtap webhooks`` they talk to the records store directly, for one organization (the
default one unless ``--org``); the same checks as ``POST /v1/alerts`` apply (URL and address
rule, metric, threshold, window, filter, group-by, the per-organization limit). The signing
secret is printed once.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from llmtap.alerts.rules import AlertLimits, AlertRuleError, check_rule
from llmtap.api.alerts import rule_json
from llmtap.api.filters import FilterLimits
from llmtap.delivery.guard import TargetRefused, check_new_url
from llmtap.errors import LlmtapError
from llmtap.settings import Settings


def _limits(settings: Settings) -> AlertLimits:
    return AlertLimits(
        min_window_s=settings.alerts_min_window_s,
        max_window_s=settings.alerts_max_window_s,
        max_per_org=settings.alerts_max_per_org,
        filter_limits=FilterLimits(
            max_values=settings.api_filter_max_values,
            max_leaves=settings.api_filter_max_leaves,
            max_depth=settings.api_filter_max_depth,
        ),
    )


def add_alert(
    settings: Settings,
    *,
    org_id: str | None,
    url: str,
    metric: str,
    threshold: float,
    comparison: str,
    window_s: int,
    min_requests: int,
    name: str | None,
    filter_json: str | None,
    group_by: str | None,
) -> int:
    from llmtap.stores.factory import open_records_store

    def refuse(reason: str) -> int:
        print(f"cannot add the alert: {reason}", file=sys.stderr)
        return 2

    try:
        check_new_url(url, settings.outbox_allow_private_targets)
    except TargetRefused as exc:
        return refuse(f"url: {exc}")
    parsed: Any = None
    if filter_json is not None:
        try:
            parsed = json.loads(filter_json)
        except ValueError:
            return refuse("--filter: not JSON")
        if not isinstance(parsed, dict):
            return refuse("--filter: expected a JSON object")
    limits = _limits(settings)
    try:
        spec = check_rule(
            name=name,
            metric=metric,
            comparison=comparison,
            threshold=threshold,
            window_s=window_s,
            min_requests=min_requests,
            filter=parsed,
            group_by=group_by,
            limits=limits,
        )
    except AlertRuleError as exc:
        return refuse(str(exc))
    store = open_records_store(settings.records_url)
    try:
        org = org_id or store.default_org_id()
        if store.alerts.count(org) >= limits.max_per_org:
            print(
                f"cannot add the alert: the organization has {limits.max_per_org} already"
                " (LLMTAP_ALERTS_MAX_PER_ORG)",
                file=sys.stderr,
            )
            return 1
        rule_id, secret = store.alerts.create(org, url, spec)
    except LlmtapError as exc:
        print(f"cannot add the alert: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"alert:          {rule_id}\norganization:   {org}\nsigning secret: {secret}")
    print("The signing secret is shown once.", file=sys.stderr)
    return 0


def list_alerts(settings: Settings, *, org_id: str | None, as_json: bool) -> int:
    from llmtap.stores.factory import open_records_store

    store = open_records_store(settings.records_url)
    try:
        org = org_id or store.default_org_id()
        rules = [
            rule_json(r, [e for e in store.alerts.history(org, r.id, 100) if e.resolved_ms is None])
            for r in store.alerts.rules(org)
        ]
    finally:
        store.close()
    if as_json:
        print(json.dumps(rules, indent=2))
        return 0
    if not rules:
        print("no alerts")
        return 0
    for r in rules:
        group = f"  by={r['group_by']}" if r["group_by"] else ""
        print(
            f"{r['id']}  {r['name']!r}  {r['metric']} {r['comparison']} {r['threshold']:g}"
            f"  window={r['window_s']}s  min={r['min_requests']}{group}  {r['state']}"
            f"  {r['url']}"
        )
    return 0


def remove_alert(settings: Settings, *, org_id: str | None, rule_id: str) -> int:
    from llmtap.stores.factory import open_records_store

    store = open_records_store(settings.records_url)
    try:
        org = org_id or store.default_org_id()
        found = store.alerts.delete(org, rule_id)
    finally:
        store.close()
    if not found:
        print(f"no alert {rule_id} in organization {org}", file=sys.stderr)
        return 1
    print(f"deleted {rule_id}")
    return 0
