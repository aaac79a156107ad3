"""Reading figures out of a results JSON, where any part may be missing."""

from __future__ import annotations

from typing import Any


def dig(d: Any, *path: str) -> Any:
    """``d[path[0]][path[1]]...``, or None as soon as a step is missing or not a dict."""
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d
