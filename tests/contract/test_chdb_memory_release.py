"""chDB gives back what its queries freed once the process is over its memory line.

Its allocator keeps freed memory for the next query: after a week's Overview at a million rows
the API kept ~250 MB it no longer used (resident 775 MB). ``release_above_mb`` purges it after
a query that leaves the process above the line.
"""

from __future__ import annotations

from pathlib import Path

from llmtap.stores.analytics.chdb_client import ChdbClient, resident_mb

# ~160 MB of UInt64 values held by one aggregate state, freed when the query ends
BIG = "SELECT length(groupArray(number)) AS n FROM numbers(20000000)"


def test_freed_query_memory_goes_back_over_the_line(tmp_path: Path) -> None:
    client = ChdbClient(tmp_path / "analytics")
    try:
        client.query_rows("SELECT 1 AS one", {})
        base = resident_mb()
        assert client.query_rows(BIG, {}) == [{"n": 20_000_000}]
        assert resident_mb() > base + 100  # kept by the allocator: nothing holds it any more
        client.release_above_mb = int(base) + 50
        assert client.query_rows(BIG, {}) == [{"n": 20_000_000}]
        assert resident_mb() < base + 50
    finally:
        client.close()
