"""What a firing or a resolution says, as the bytes the outbox sends.

A generic endpoint gets llmtap's JSON (``type`` ``alert.firing`` / ``alert.resolved``, the rule,
the episode, the value and the threshold); a Slack incoming webhook (``hooks.slack.com``) gets
Slack's shape, ``{"text": ..., "blocks": [...]}``, with ``&``, ``<`` and ``>`` escaped so a rule
name or a group value cannot mention ``<!channel>`` or forge a link. Both are signed like any
webhook (the headers are harmless to Slack).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from llmtap.alerts.rules import COMPARISONS, METRICS
from llmtap.stores.records.alerts import AlertRule, Episode

FIRING, RESOLVED = "firing", "resolved"
_GROUP_SHOWN = 200
"""Characters of a group value in the text (Slack refuses a section over 3000)."""
SLACK_HOSTS = frozenset({"hooks.slack.com"})


def is_slack(url: str) -> bool:
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return False
    return host in SLACK_HOSTS


def _iso(unix_ms: int | None) -> str | None:
    if unix_ms is None:
        return None
    return datetime.fromtimestamp(unix_ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "no data"
    text = f"{value:.4g}"
    return f"{text} {unit}" if unit else text


def summary(rule: AlertRule, episode: Episode, status: str, value: float | None) -> str:
    spec = rule.spec
    metric = METRICS[spec.metric]
    sign = COMPARISONS[spec.comparison][0]
    value_text = episode.group_value
    if value_text is not None and len(value_text) > _GROUP_SHOWN:
        value_text = value_text[:_GROUP_SHOWN] + "…"
    group = "" if spec.group_by is None else f" [{spec.group_by}={value_text}]"
    word = "FIRING" if status == FIRING else "RESOLVED"
    return (
        f"{word}: {spec.name}{group}: {spec.metric} is {_figure(value, metric.unit)}"
        f" (alert when {sign} {_figure(spec.threshold, metric.unit)},"
        f" over the last {spec.window_s}s)"
    )


def payload(
    rule: AlertRule,
    episode: Episode,
    status: str,
    value: float | None,
    requests: int,
    now_ms: int,
) -> dict[str, Any]:
    spec = rule.spec
    return {
        "type": f"alert.{status}",
        "status": status,
        "alert_id": rule.id,
        "alert_name": spec.name,
        "episode_id": episode.id,
        "metric": spec.metric,
        "comparison": spec.comparison,
        "threshold": spec.threshold,
        "value": value,
        "window_s": spec.window_s,
        "min_requests": spec.min_requests,
        "requests": requests,
        "group_by": spec.group_by,
        "group": episode.group_value,
        "fired_at": _iso(episode.fired_ms),
        "resolved_at": _iso(now_ms) if status == RESOLVED else None,
        "text": summary(rule, episode, status, value),
    }


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(document: dict[str, Any]) -> dict[str, Any]:
    text = _slack_escape(document["text"])
    icon = ":rotating_light:" if document["status"] == FIRING else ":white_check_mark:"
    details = (
        f"alert `{document['alert_id']}` · episode `{document['episode_id']}`"
        f" · {document['requests']} calls in the window"
    )
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} {text}"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": details}]},
        ],
    }


def body(rule: AlertRule, document: dict[str, Any]) -> bytes:
    shaped = slack(document) if is_slack(rule.url) else document
    return json.dumps(shaped, separators=(",", ":"), ensure_ascii=False).encode()
