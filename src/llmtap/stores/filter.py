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

FieldKind = Literal["str", "int", "float", "bool", "time", "cost", "text"]

PROPERTY_PREFIX = "properties."


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


@dataclass(frozen=True, slots=True)
class Branch:
    op: Literal["and", "or"]
    items: tuple[Filter, ...]


Filter = Leaf | Branch


def has_text(node: Filter | None) -> bool:
    """Whether any leaf needs the bodies (the database cannot answer it alone)."""
    if node is None:
        return False
    if isinstance(node, Leaf):
        return node.kind == "text"
    return any(has_text(item) for item in node.items)
