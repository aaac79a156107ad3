"""The consumer process's garbage collector: start-up objects frozen, young passes spaced out.

Run in a fresh interpreter each: freezing is for a whole process, never for the test runner's.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_PROBE = """
import gc, json, sys
from llmtap.consumer.heap import settle_heap
before = gc.get_threshold()
settle_heap(int(sys.argv[1]))
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def _settle(threshold: int) -> dict[str, list[int] | int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(threshold)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    result: dict[str, list[int] | int] = json.loads(out.stdout)
    return result


@pytest.mark.parametrize("threshold", [10000, 50000])
def test_young_passes_are_spaced_out_and_start_up_objects_frozen(threshold: int) -> None:
    seen = _settle(threshold)
    before, after = seen["before"], seen["after"]
    assert isinstance(before, list) and isinstance(after, list)
    assert after == [threshold, *before[1:]]
    assert isinstance(seen["frozen"], int) and seen["frozen"] > 1000


def test_zero_keeps_pythons_thresholds() -> None:
    seen = _settle(0)
    assert seen["after"] == seen["before"]
    assert isinstance(seen["frozen"], int) and seen["frozen"] > 1000
