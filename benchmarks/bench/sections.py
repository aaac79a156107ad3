"""Sections of RESULTS.md that a part owns between two markers: a full report rewrites the file
and keeps them, a run of that part replaces its own."""

from __future__ import annotations

import re
from pathlib import Path


def update_section(path: Path, section: str, start: str, end: str) -> None:
    """Put ``section`` (which starts with ``start`` and ends with ``end``) in place of the one in
    ``path``, or at its end."""
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        head, _, rest = text.partition(start)
        _, _, tail = rest.partition(end)
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def kept_section(path: Path, start: str, end: str) -> str:
    """The section as ``path`` holds it now ('' if none)."""
    text = path.read_text() if path.exists() else ""
    if start not in text:
        return ""
    return start + text.partition(start)[2].partition(end)[0] + end + "\n"


def all_kept(path: Path) -> list[str]:
    """Every marked section ``path`` holds now (``<!-- name:start -->`` … ``<!-- name:end -->``),
    in order: a full report keeps what each part wrote, including parts it did not run."""

    text = path.read_text() if path.exists() else ""
    found = re.finditer(r"<!-- ([a-z0-9-]+):start -->.*?<!-- \1:end -->", text, flags=re.S)
    return [m.group(0) + "\n" for m in found]
