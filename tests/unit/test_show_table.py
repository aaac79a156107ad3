"""``llmtap requests``: the cost column says what a call cost, or that it had no known price."""

from __future__ import annotations

import pytest

from llmtap.show import COLUMNS, render_table, table_row
from llmtap.stores.row import RequestRow


def _row(request_id: str, cost_nano_usd: int | None) -> RequestRow:
    return RequestRow(
        request_id=request_id,
        org_id="org",
        created_unix_ms=1_764_072_000_000.0,
        source="proxy",
        provider="openai",
        method="POST",
        target_url="https://api.openai.com/v1/chat/completions",
        path="/v1/chat/completions",
        status=200,
        model="gpt-4o-mini",
        usage_source="provider",
        input_tokens=10,
        output_tokens=20,
        cost_nano_usd=cost_nano_usd,
        latency_ms=100.0,
    )


@pytest.mark.parametrize(
    ("nano", "shown"),
    [
        (None, "unpriced"),
        (0, "$0.00"),
        (123_000, "$0.000123"),
        (1_234, "$0.000001"),
        (12_500_000_000, "$12.50"),
    ],
)
def test_the_cost_column(nano: int | None, shown: str) -> None:
    assert table_row(_row("r", nano))[COLUMNS.index("cost")] == shown


def test_the_table_lines_up_priced_and_unpriced_calls() -> None:
    header, priced, unpriced = render_table([_row("a", 123_000), _row("b", None)]).splitlines()
    at = header.index("cost")
    assert priced[at:].startswith("$0.000123") and unpriced[at:].startswith("unpriced")
