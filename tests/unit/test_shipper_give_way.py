"""A proxy answering faster than its shipper logs: past ``shipper_give_way_backlog`` waiting
calls the loop pauses now and then (the GIL to the shipper), bounded in rate; past
``shipper_max_backlog`` records are dropped and counted, as before. The shipper's thread is not
started here, so every submitted call stays waiting."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from llmtap.proxy import shipper as shipper_module
from llmtap.proxy.metrics import ProxyMetrics
from llmtap.proxy.server import build_shipper
from llmtap.proxy.shipper import GIVE_WAY_EVERY_S, GIVE_WAY_S
from llmtap.settings import Settings

CALL: Any = object()  # submit only hands the exchange over


def test_past_the_watermark_the_loop_gives_way_at_most_once_per_interval_and_drops_at_max(
    tmp_path: Path,
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", shipper_give_way_backlog=3, shipper_max_backlog=8
    )
    metrics = ProxyMetrics()
    shipper = build_shipper(settings, metrics)
    for _ in range(3):
        shipper.submit(CALL)  # under the watermark: no pause
    assert metrics.shipper_give_ways == 0

    started = time.monotonic()
    shipper.submit(CALL)  # 3 waiting: gives way once
    assert metrics.shipper_give_ways == 1
    assert time.monotonic() - started >= GIVE_WAY_S * 0.9
    shipper.submit(CALL)  # right after: not again within GIVE_WAY_EVERY_S
    assert metrics.shipper_give_ways == 1

    time.sleep(GIVE_WAY_EVERY_S * 1.5)
    shipper.submit(CALL)
    assert metrics.shipper_give_ways == 2
    shipper.submit(CALL)
    shipper.submit(CALL)  # 8 waiting now
    assert metrics.records_dropped == 0
    shipper.submit(CALL)  # at max: dropped and counted, no pause
    shipper.submit(CALL)
    assert metrics.records_dropped == 2
    assert shipper._inbox.qsize() == 8


def test_zero_turns_it_off_and_a_plain_call_under_the_watermark_never_sleeps(
    tmp_path: Path, monkeypatch: Any
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(shipper_module.time, "sleep", slept.append)
    settings = Settings(
        data_dir=tmp_path / "off", shipper_give_way_backlog=0, shipper_max_backlog=5
    )
    metrics = ProxyMetrics()
    shipper = build_shipper(settings, metrics)
    for _ in range(7):
        shipper.submit(CALL)
    assert slept == [] and metrics.shipper_give_ways == 0
    assert metrics.records_dropped == 2

    on = build_shipper(
        Settings(data_dir=tmp_path / "on", shipper_give_way_backlog=100), ProxyMetrics()
    )
    for _ in range(50):
        on.submit(CALL)
    assert slept == []
