"""``Helicone-RateLimit-Policy`` text: every form Helicone documents, its canonical spelling, and
the bounds (window 60 s to a year, quota 1 to a billion)."""

from __future__ import annotations

import pytest

from llmtap.proxy.gateway.ratelimit_policy import (
    CENT_UNITS,
    PolicyError,
    RateLimitPolicy,
    parse_policy,
)


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("1000;w=60", RateLimitPolicy(1000, 60)),
        ("1000;w=3600;u=request", RateLimitPolicy(1000, 3600)),
        ("500;w=86400;u=cents", RateLimitPolicy(500, 86400, "cents")),
        ("10;w=60;s=user", RateLimitPolicy(10, 60, "request", "user")),
        ("10;w=60;u=cents;s=Team-Name", RateLimitPolicy(10, 60, "cents", "team-name")),
        (" 10 ; W=60 ; U=Cents ", RateLimitPolicy(10, 60, "cents")),
        ("1;w=31536000", RateLimitPolicy(1, 31_536_000)),
        ("1000000000;w=60", RateLimitPolicy(1_000_000_000, 60)),
    ],
)
def test_every_documented_form_reads(text: str, policy: RateLimitPolicy) -> None:
    assert parse_policy(text) == policy
    assert parse_policy(policy.text()) == policy  # the canonical spelling reads back the same


def test_the_canonical_spelling_names_the_unit_and_the_segment() -> None:
    assert parse_policy("10;w=60").text() == "10;w=60;u=request"
    assert parse_policy("10;s=user;w=60;u=cents").text() == "10;w=60;u=cents;s=user"


def test_cents_are_counted_in_millionths() -> None:
    assert parse_policy("5;w=60;u=cents").limit_units == 5 * CENT_UNITS
    assert parse_policy("5;w=60").limit_units == 5


@pytest.mark.parametrize(
    "text",
    [
        "",
        "w=60",
        "10",
        "10;w=59",
        "10;w=31536001",
        "0;w=60",
        "1000000001;w=60",
        "10;w=60;q=1",
        "10;w",
        "10;w=60;s=",
        "10;w=60;s=user id",
        "\uff11\uff10;w=60",  # full-width digits: int() would take them
        "10;w=\uff16\uff10",
        "x" * 257,
    ],
)
def test_what_cannot_be_read_is_a_policy_error(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text)
