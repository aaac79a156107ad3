"""The CPU priority of ``serve``'s consumer thread.

In ``llmtap serve`` the proxy and the consumer share the machine's cores. The consumer is batch
work with a durable queue in front of it: when both want the CPU, the proxy's calls must win and
the consumer may fall behind, then catch up when the load drops (nothing is lost; freshness is
what it costs). Linux gives each thread its own nice value, so only the batch loop is lowered:
the API thread beside it and the proxy processes keep the default priority
(docs/decisions/2026-12-02-serve-consumer-priority.md).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

NICE_MAX = 19


def lower_thread_priority(native_id: int | None, nice: int) -> int | None:
    """Raise the nice value of thread ``native_id`` (a Linux thread id) by ``nice``, capped at
    19; return the new value, or None when nothing was changed (``nice`` 0, no thread, or a
    platform or sandbox that refuses: logged, the consumer runs at the default priority)."""
    if nice <= 0 or native_id is None:
        return None
    try:
        current = os.getpriority(os.PRIO_PROCESS, native_id)
        target = min(NICE_MAX, current + nice)
        os.setpriority(os.PRIO_PROCESS, native_id, target)
    except (OSError, AttributeError) as exc:
        log.warning("cannot lower the consumer thread's priority (%s); it keeps the default", exc)
        return None
    return target
