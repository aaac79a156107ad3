"""Where the time goes: py-spy's raw samples folded into the top functions (self and inclusive)."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any


def fold(raw: Path, top: int = 15) -> dict[str, Any]:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    if not total:
        return {"samples": 0, "self": [], "inclusive": []}

    def rows(counter: collections.Counter[str]) -> list[tuple[float, str]]:
        return [(round(100 * n / total, 1), f) for f, n in counter.most_common(top)]

    return {"samples": total, "self": rows(own), "inclusive": rows(incl)}
