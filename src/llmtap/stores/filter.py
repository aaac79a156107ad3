"""The filter tree the stores' queries take: a leaf or an ``and``/``or`` of filters.

The API builds it from JSON (``api/filters.py``: field names, operators and values checked there,
each leaf carrying its field's kind); each store compiles it for its engine
(``stores/records/filter_sql.py``, ``stores/analytics/filter_clickhouse.py``) and
``api/filter_match.py`` evaluates it in Python, all with one meaning: a missing value (``NULL``)
matches no comparison, ``exists`` asks for presence, ``contains`` is case-sensitive, costs
compare exactly in nano-dollars.

There is no ``not``: without it the tree is monotone, so a leaf a database cannot evaluate (text
in bodies) can be relaxed to "true" in SQL and checked afterwards on the candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from llmtap.stores.scores import FEEDBACK

FieldKind = Literal["str", "int", "float", "bool", "time", "cost", "text"]

PROPERTY_PREFIX = "properties."
SCORE_PREFIX = "score."
FEEDBACK_FIELD = "feedback"
"""``feedback`` filters on the feedback score (``stores/scores.FEEDBACK``) as true/false."""


class FilterError(ValueError):
    """A filter (or query parameter) that cannot run; the message names the offending part.
    The API answers it 400."""


@dataclass(frozen=True, slots=True)
class Leaf:
    field: str
    """A filterable field's name, or ``properties.<name>``."""
    op: str
    value: Any
    """Normalised: unix ms for ``created``, nano-dollars (``Decimal``) for ``cost_usd``,
    a tuple for ``in``, a bool for ``exists``."""
    kind: FieldKind
    """The field's kind (``str`` for a property); ``text`` is a search in the bodies."""

    @property
    def property_name(self) -> str | None:
        if self.field.startswith(PROPERTY_PREFIX):
            return self.field[len(PROPERTY_PREFIX) :]
        return None

    @property
    def score_name(self) -> str | None:
        """The score this leaf compares (``score.<name>``, or feedback's), else ``None``."""
        if self.field.startswith(SCORE_PREFIX):
            return self.field[len(SCORE_PREFIX) :]
        if self.field == FEEDBACK_FIELD:
            return FEEDBACK
        return None

    @property
    def score_value(self) -> Any:
        """The value compared with a score: feedback's true/false as 1/0 (how it is kept).
        ``exists`` keeps its true/false: it asks whether there is a score, not for its value."""
        if self.field == FEEDBACK_FIELD and self.op != "exists" and isinstance(self.value, bool):
            return 1.0 if self.value else 0.0
        return self.value


@dataclass(frozen=True, slots=True)
class Branch:
    op: Literal["and", "or"]
    items: tuple[Filter, ...]


Filter = Leaf | Branch


def has_scores(node: Filter | None) -> bool:
    """Whether any leaf compares a score (answered from the scores, not the row)."""
    if node is None:
        return False
    if isinstance(node, Leaf):
        return node.score_name is not None
    return any(has_scores(item) for item in node.items)


def has_text(node: Filter | None) -> bool:
    """Whether any leaf needs the bodies (the database cannot answer it alone)."""
    if node is None:
        return False
    if isinstance(node, Leaf):
        return node.kind == "text"
    return any(has_text(item) for item in node.items)
