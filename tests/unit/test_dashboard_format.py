"""The dashboard's number formats: what a person reads in the tables and cards."""

from __future__ import annotations

import pytest

from llmtap.dashboard.render import fmt_cost


@pytest.mark.parametrize(
    ("usd", "shown"),
    [
        (None, "—"),
        (0.0, "$0"),
        (0.00024, "$0.00024"),
        (0.000169, "$0.000169"),
        (0.00000024, "<$0.000001"),  # 12 tokens of text-embedding-3-small; was "$0."
        (0.02, "$0.02"),
        (1234.5, "$1,234.50"),
    ],
)
def test_costs_read_as_amounts(usd: float | None, shown: str) -> None:
    assert fmt_cost(usd) == shown
