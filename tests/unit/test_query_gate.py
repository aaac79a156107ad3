"""The query gate: one slot, a bounded wait, and a bounded number of waiters."""

from __future__ import annotations

import threading

import pytest

from llmtap.api.query_gate import QueryBusy, QueryGate
from support.probes import wait_for


def test_past_the_waiting_bound_a_query_is_refused_at_once_and_the_waiters_still_run() -> None:
    gate = QueryGate(1, wait_s=3600.0, max_waiting=2)
    ran: list[int] = []

    def waiter(n: int) -> None:
        with gate.slot():
            ran.append(n)

    with gate.slot():
        threads = [threading.Thread(target=waiter, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        wait_for(lambda: gate.waiting == 2, timeout_s=10)
        # a third would hold one more server thread for up to an hour: refused without waiting
        with pytest.raises(QueryBusy), gate.slot():
            pass
        assert gate.waiting == 2
    for thread in threads:
        thread.join(10)
    assert sorted(ran) == [0, 1]


def test_a_free_slot_is_taken_without_counting_as_a_waiter() -> None:
    gate = QueryGate(1, wait_s=0.0, max_waiting=0)
    with gate.slot():
        assert gate.waiting == 0
    with gate.slot():  # released, so free again
        pass
