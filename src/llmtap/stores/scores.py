"""Scores and feedback on a logged call: what one is, and which names and values are accepted.

A score is a named number a caller attaches to a call after the fact
(``POST /v1/request/{id}/score``, Helicone's shape). Feedback (``POST /v1/request/{id}/feedback``)
is the score named ``FEEDBACK``, as Helicone stores it: a thumbs-up is 1, a thumbs-down 0. A
boolean is kept as 1/0 (Helicone's rule) with ``is_bool`` set, so it reads back as a boolean.
Both stores key a score on (organization, request id, name): posting a name again replaces its
value (last write wins). Decision: docs/decisions/2026-12-01-scores.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

FEEDBACK = "helicone-score-feedback"
"""The name feedback is kept under (Helicone's own)."""

NAME_MAX_CHARS = 128
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-]*")
"""Letters, digits and ``_ . : -`` (first a letter, digit or ``_``): a name appears in filters
(``score.<name>``), in metrics keys, in export columns and on the dashboard, and none of those
should have to escape it."""

VALUE_LIMIT = 1e15
"""Values must be finite and within ±1e15 (a float64 holds every integer up to 2**53 exactly;
this leaves room and refuses the absurd)."""


class ScoreError(ValueError):
    """A score name or value that is refused; the message names it (the API answers 400)."""


@dataclass(frozen=True, slots=True)
class Score:
    name: str
    value: float
    is_bool: bool = False

    @property
    def shown(self) -> float | bool:
        """The value as the caller sent it: a boolean back as a boolean."""
        return bool(self.value) if self.is_bool else self.value


@dataclass(frozen=True, slots=True)
class StoredScore:
    """A score as the records store keeps it, with its call's key and its version
    (``updated_unix_ms``, the time of its last write): what the analytics store is sent."""

    org_id: str
    request_id: str
    name: str
    value: float
    is_bool: bool
    updated_unix_ms: float


def check_name(name: object, where: str = "name") -> str:
    if not isinstance(name, str) or not name:
        raise ScoreError(f"{where}: a score name is a non-empty string")
    if len(name) > NAME_MAX_CHARS:
        raise ScoreError(f"{where}: a score name has at most {NAME_MAX_CHARS} characters")
    if not NAME_PATTERN.fullmatch(name):
        raise ScoreError(
            f"{where}: a score name holds letters, digits and _ . : - only"
            " (and starts with a letter, a digit or _)"
        )
    return name


def score_of(name: object, raw: object) -> Score:
    """The ``Score`` for one ``name: value`` pair as JSON decoded it; ``ScoreError`` otherwise."""
    checked = check_name(name)
    where = f"scores.{checked}"
    if isinstance(raw, bool):
        return Score(checked, 1.0 if raw else 0.0, is_bool=True)
    if not isinstance(raw, int | float):
        raise ScoreError(f"{where}: a score is a number or true/false")
    try:
        value = float(raw)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value) or abs(value) > VALUE_LIMIT:
        raise ScoreError(f"{where}: a score is a finite number within ±{VALUE_LIMIT:g}")
    return Score(checked, value)
