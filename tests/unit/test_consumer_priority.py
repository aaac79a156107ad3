"""Lowering one thread's CPU priority (``serve``'s consumer) leaves the rest of the process alone."""

from __future__ import annotations

import os
import threading

from llmtap.consumer.priority import NICE_MAX, lower_thread_priority


def _nice(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def _in_a_thread(nice: int) -> tuple[int | None, int, int]:
    """(returned value, the thread's nice value after, this thread's nice value after)."""
    ready = threading.Event()
    done = threading.Event()
    seen: dict[str, int | None] = {}

    def body() -> None:
        ready.set()
        done.wait(10)

    thread = threading.Thread(target=body)
    thread.start()
    ready.wait(10)
    assert thread.native_id is not None
    seen["result"] = lower_thread_priority(thread.native_id, nice)
    seen["thread"] = _nice(thread.native_id)
    done.set()
    thread.join(10)
    after = seen["thread"]
    assert after is not None
    return seen["result"], after, _nice(threading.get_native_id())


def test_only_the_named_thread_is_lowered() -> None:
    base = _nice(threading.get_native_id())
    result, thread_nice, own_nice = _in_a_thread(10)
    assert result == min(NICE_MAX, base + 10)
    assert thread_nice == min(NICE_MAX, base + 10)
    assert own_nice == base


def test_zero_changes_nothing() -> None:
    base = _nice(threading.get_native_id())
    result, thread_nice, _ = _in_a_thread(0)
    assert result is None
    assert thread_nice == base


def test_capped_at_19_and_a_missing_thread_is_not_an_error() -> None:
    result, thread_nice, _ = _in_a_thread(40)
    assert result == NICE_MAX == thread_nice
    assert lower_thread_priority(None, 10) is None
    assert lower_thread_priority(2**22 + 12345, 10) is None  # no such thread: logged, not raised
