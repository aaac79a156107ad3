"""What an alert rule may say, and the figure it watches in a ``Metrics`` of the analytics store.

One check for the API and the CLI (``check_rule``): a metric of ``METRICS``, a comparison of
``COMPARISONS``, a finite threshold within ``MAX_ABS_THRESHOLD``, a window within the settings'
bounds, a filter in the language of ``/v1/requests`` (no text in bodies: metrics cannot see
them) and a group-by of ``/v1/metrics``. Anything else is an ``AlertRuleError`` naming the field.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmtap.api.filters import FilterLimits, check_property_name, check_size, parse_filter
from llmtap.stores.analytics.ddl import GROUP_KEYS
from llmtap.stores.analytics.metrics import Metrics
from llmtap.stores.filter import Filter, FilterError, has_text
from llmtap.stores.records.alerts import RuleSpec

MAX_ABS_THRESHOLD = 1e12
MAX_MIN_REQUESTS = 1_000_000_000
MAX_NAME = 200


class AlertRuleError(ValueError):
    """A rule definition that cannot be used; the message names the field (a 400 in the API)."""


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True, slots=True)
class Metric:
    description: str
    unit: str
    value: Callable[[Metrics], float | None]


METRICS: dict[str, Metric] = {
    "error_rate": Metric(
        "share of calls that failed (status >= 400, no answer, or an error), 0-1",
        "",
        lambda m: _share(m.errors, m.requests),
    ),
    "cost_usd": Metric(
        "cost of the priced calls in the window, USD",
        "USD",
        lambda m: m.cost_nano_usd / 1e9,
    ),
    "request_count": Metric("calls in the window", "calls", lambda m: float(m.requests)),
    "latency_p95_ms": Metric(
        "95th percentile of latency, ms", "ms", lambda m: m.latency_ms.get("p95")
    ),
    "unpriced_share": Metric(
        "share of calls with a model but no known price, 0-1",
        "",
        lambda m: _share(m.unpriced_requests, m.requests),
    ),
}

COMPARISONS: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    "gt": (">", operator.gt),
    "gte": (">=", operator.ge),
    "lt": ("<", operator.lt),
    "lte": ("<=", operator.le),
}


@dataclass(frozen=True, slots=True)
class AlertLimits:
    """Bounds on rules (settings ``alerts_*``)."""

    min_window_s: int = 60
    max_window_s: int = 86_400
    max_per_org: int = 50
    filter_limits: FilterLimits = field(default_factory=FilterLimits)


def breaches(spec: RuleSpec, value: float | None) -> bool:
    if value is None or math.isnan(value):
        return False
    return COMPARISONS[spec.comparison][1](value, spec.threshold)


def parsed_filter(raw: dict[str, Any] | None, limits: FilterLimits) -> Filter | None:
    """The stored filter as the metrics query takes it; ``AlertRuleError`` when unusable."""
    if raw is None:
        return None
    try:
        tree = parse_filter(raw)
        check_size(tree, limits)
    except FilterError as exc:
        raise AlertRuleError(str(exc)) from None
    if has_text(tree):
        raise AlertRuleError("filter: text in bodies cannot be used in an alert (metrics only)")
    return tree


def check_rule(
    *,
    name: str | None,
    metric: str,
    comparison: str,
    threshold: float,
    window_s: int,
    min_requests: int,
    filter: dict[str, Any] | None,
    group_by: str | None,
    limits: AlertLimits,
) -> RuleSpec:
    if metric not in METRICS:
        raise AlertRuleError(f"metric: unknown {metric[:64]!r}; use one of {', '.join(METRICS)}")
    if comparison not in COMPARISONS:
        raise AlertRuleError(
            f"comparison: unknown {comparison[:16]!r}; use one of {', '.join(COMPARISONS)}"
        )
    if not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise AlertRuleError("threshold: must be a finite number")
    if abs(threshold) > MAX_ABS_THRESHOLD:
        raise AlertRuleError(f"threshold: must be within ±{MAX_ABS_THRESHOLD:g}")
    if not limits.min_window_s <= window_s <= limits.max_window_s:
        raise AlertRuleError(
            f"window_s: must be between {limits.min_window_s} and {limits.max_window_s} seconds"
        )
    if not 0 <= min_requests <= MAX_MIN_REQUESTS:
        raise AlertRuleError(f"min_requests: must be between 0 and {MAX_MIN_REQUESTS}")
    if group_by is not None:
        if group_by.startswith("property:"):
            try:
                check_property_name(group_by.removeprefix("property:"), "group_by")
            except FilterError as exc:
                raise AlertRuleError(str(exc)) from None
            if len(group_by) > 300:
                raise AlertRuleError("group_by: the property name is too long")
        elif group_by not in GROUP_KEYS:
            raise AlertRuleError(
                f"group_by: unknown {group_by[:64]!r}; use one of"
                f" {', '.join(GROUP_KEYS)} or property:<name>"
            )
    parsed_filter(filter, limits.filter_limits)
    label = name if name else f"{metric} {COMPARISONS[comparison][0]} {threshold:g}"
    if len(label) > MAX_NAME or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in label):
        raise AlertRuleError(f"name: at most {MAX_NAME} characters, no control characters")
    return RuleSpec(
        name=label,
        metric=metric,
        comparison=comparison,
        threshold=float(threshold),
        window_s=window_s,
        min_requests=min_requests,
        filter=filter,
        group_by=group_by.lower() if group_by and group_by.startswith("property:") else group_by,
    )
