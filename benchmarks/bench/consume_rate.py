"""Drain a filled queue with one consumer and time it (run as its own, pinned process)::

    python -m bench.consume_rate '{"expect": 50000, "timeout_s": 300, "idle_s": 60}'

It stops when ``expect`` records are done and the queue has gone quiet, after ``idle_s`` without
progress (a slow batch can take a while), or at ``timeout_s``: the rate is then over what was
done. Settings come from the environment (``LLMTAP_*``), as for ``llmtap consume``. The batch loop runs
on the main thread so a sampling profiler sees it. Prints one JSON line.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time

from llmtap.consumer.service import ConsumerService
from llmtap.settings import load_settings


def main() -> None:
    cfg = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.WARNING)
    settings = load_settings()
    opened = time.perf_counter()
    opened_wall = time.time()
    service = ConsumerService(settings)
    try:  # as ``llmtap consume`` does once the stores are open (absent in older checkouts)
        from llmtap.consumer.heap import settle_heap
    except ImportError:
        pass
    else:
        settle_heap(settings.consumer_gc_threshold)
    stop = threading.Event()
    runner = service.runner
    t0 = time.perf_counter()
    cpu0 = cpu_done = time.process_time()
    last_progress = t0
    done_at = t0
    processed = 0
    deadline = t0 + float(cfg["timeout_s"])
    while time.perf_counter() < deadline:
        runner.run_once(stop)
        now = time.perf_counter()
        if runner.stats.processed != processed:
            processed = runner.stats.processed
            last_progress = done_at = now
            cpu_done = time.process_time()
        # the fill count is a floor (calls in flight when the load stopped are logged too), so
        # stop once it is reached and the queue has gone quiet, or when nothing moves at all
        idle = now - last_progress
        if (processed >= cfg["expect"] and idle > 1.0) or idle > float(cfg["idle_s"]):
            break
    seconds = done_at - t0
    cpu_s = (cpu_done - cpu0) if processed else 0.0
    result = {
        "processed": processed,
        "expected": cfg["expect"],
        "seconds": seconds,
        "records_per_s": processed / seconds if seconds else 0.0,
        # CPU of this process (every thread: the delivery worker too) while it made progress:
        # on a shared machine, records per CPU-second moves less than records per second
        "cpu_s": cpu_s,
        "records_per_cpu_s": processed / cpu_s if cpu_s else 0.0,
        "batches": runner.stats.batches,
        "dead_lettered": runner.stats.dead_lettered,
        "retries": runner.stats.retries,
        "open_s": t0 - opened,
        # wall-clock bounds of the work, to time several consumers of one group together
        "start_wall": opened_wall + (t0 - opened),
        "done_wall": opened_wall + (done_at - opened),
    }
    service.stop(timeout=30)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
