"""The consumer process's garbage collector, set once the stores are open.

A batch allocates a few hundred thousand short-lived objects (decoded records, rows, parameter
tuples), none of them in reference cycles, on top of some hundred thousand long-lived ones made
at start (SQLAlchemy's and chDB's modules, the price list). With Python's defaults the cyclic
collector ran a young pass every 700 allocations and, every few batches, a full pass over all of
them: a tenth of the consumer's CPU (docs/decisions/2026-12-02-consumer-speed.md).
"""

from __future__ import annotations

import gc


def settle_heap(gen0_threshold: int) -> None:
    """Freeze what start-up made (full passes skip it) and space the young passes out to
    ``gen0_threshold`` allocations (0: Python's default). Call once per process, after opening
    the stores: objects frozen are never collected, so this is not for a test process."""
    gc.collect()
    gc.freeze()
    if gen0_threshold > 0:
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(gen0_threshold, older, oldest)
