"""The rules a new webhook or PostHog project is held to, in one place.

``POST /v1/webhooks`` and ``PUT /v1/integrations/posthog`` (``webhooks.py``, ``posthog.py``),
``llmtap webhooks add`` (``webhook_admin.py``) and the dashboard's forms
(``llmtap.dashboard.webhook_new``, ``llmtap.dashboard.posthog``) all call these, so a URL one of
them refuses is refused by all. Each raises ``SettingRefused`` with a message that names the
field and is safe to show to the user (it holds no internal error text).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from llmtap.delivery.guard import MAX_URL_LENGTH, TargetRefused, check_new_url
from llmtap.delivery.kinds import DEFAULT_POSTHOG_HOST, posthog_base_url
from llmtap.errors import LlmtapError
from llmtap.stores.records.integrations import PostHogProject
from llmtap.stores.records.store import RecordsStore

MAX_FILTERS = 20
MAX_FILTER_TEXT = 256
MAX_POSTHOG_KEY = 200


class SettingRefused(LlmtapError):
    """A webhook or PostHog setting that may not be saved; the message is for the user."""


class WebhookLimitReached(SettingRefused):
    """The organization already has ``webhooks_max_per_org`` webhooks."""


@dataclass(frozen=True, slots=True)
class NewWebhook:
    url: str
    sample_rate: float
    property_filters: dict[str, str]


def checked_url(url: str, allow_private: bool) -> str:
    """``url`` if deliveries may go there (the proxy's address rule, ``delivery.guard``)."""
    try:
        check_new_url(url, allow_private)
    except TargetRefused as exc:
        raise SettingRefused(f"url: {exc}") from None
    return url


def checked_sample_rate(rate: float) -> float:
    if math.isnan(rate) or not 0 <= rate <= 100:
        raise SettingRefused("sample_rate: a percentage, 0-100")
    return rate


def checked_filters(filters: Mapping[str, str]) -> dict[str, str]:
    """At most ``MAX_FILTERS``, names non-empty, names and values at most ``MAX_FILTER_TEXT``
    characters; names lower-cased (property names are stored so: header names carry no case)."""
    if len(filters) > MAX_FILTERS:
        raise SettingRefused(f"at most {MAX_FILTERS} property filters")
    for name, value in filters.items():
        if not name or len(name) > MAX_FILTER_TEXT or len(value) > MAX_FILTER_TEXT:
            raise SettingRefused(
                f"a property filter's name (non-empty) and value are at most {MAX_FILTER_TEXT}"
                " characters"
            )
    return {name.lower(): value for name, value in filters.items()}


def filters_from_pairs(items: Iterable[str]) -> dict[str, str]:
    """``NAME=VALUE`` items (the CLI's ``--filter``, the dashboard's lines) as filters; blank
    items are skipped, a name given twice (in any case) is refused: both cannot match."""
    filters: dict[str, str] = {}
    seen: set[str] = set()
    for item in items:
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise SettingRefused(f"filter {item[:80]!r}: expected NAME=VALUE")
        if name.lower() in seen:
            raise SettingRefused(f"filter {name[:80]!r}: given twice")
        if len(filters) == MAX_FILTERS:  # stop reading: a pasted file costs no more than this
            raise SettingRefused(f"at most {MAX_FILTERS} property filters")
        seen.add(name.lower())
        filters[name] = value
    return filters


def checked_webhook(
    url: str, sample_rate: float, property_filters: Mapping[str, str], *, allow_private: bool
) -> NewWebhook:
    return NewWebhook(
        url=checked_url(url, allow_private),
        sample_rate=checked_sample_rate(sample_rate),
        property_filters=checked_filters(property_filters),
    )


def check_room_for_webhook(store: RecordsStore, org_id: str, max_per_org: int) -> None:
    """``WebhookLimitReached`` when the organization has ``max_per_org`` webhooks already.
    (Two creations at the same instant can both pass: the limit bounds work, it is not a quota.)"""
    if store.integrations.count_webhooks(org_id) >= max_per_org:
        raise WebhookLimitReached(f"an organization may have at most {max_per_org} webhooks")


def checked_posthog(host: str, api_key: str, *, allow_private: bool) -> PostHogProject:
    """The project to save: ``host`` as a base URL (``eu.i.posthog.com`` ->
    ``https://eu.i.posthog.com``; blank: PostHog's US cloud) held to the address rule, and the
    key stripped, without whitespace, at most ``MAX_POSTHOG_KEY`` characters."""
    base = posthog_base_url(host.strip() or DEFAULT_POSTHOG_HOST)
    if base is None or len(base) > MAX_URL_LENGTH:
        raise SettingRefused("host: expected https://host[:port][/path]")
    try:
        check_new_url(base, allow_private)
    except TargetRefused as exc:
        raise SettingRefused(f"host: {exc}") from None
    key = api_key.strip()
    if not key or any(ch.isspace() for ch in key):
        raise SettingRefused("api_key: must not be blank or hold whitespace")
    if len(key) > MAX_POSTHOG_KEY:
        raise SettingRefused(f"api_key: at most {MAX_POSTHOG_KEY} characters")
    return PostHogProject(base, key)
