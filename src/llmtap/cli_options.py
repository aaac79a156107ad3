"""The settings as command-line options, read from ``settings.py`` without importing pydantic.

``llmtap --help`` must start in well under 150 ms and importing pydantic alone costs ~80 ms, so
the CLI learns each field's name, type, default, docstring and section from the source of
``settings.py`` (``ast``, a few milliseconds) instead of from ``Settings.model_fields``.
``tests/unit/test_cli.py`` checks that both say the same, so a new field gets its option, its
``--help`` line and its environment variable from its declaration alone
(docs/decisions/2026-12-01-cli.md).
"""

from __future__ import annotations

import ast
import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SETTINGS_SOURCE = Path(__file__).with_name("settings.py")
ENV_PREFIX = "LLMTAP_"
_SETTINGS_CLASS = "Settings"
_SENTENCE_END = re.compile(r"(?<!\.)\.(?:\s|$)")  # not the dots of "..."
_OPERATORS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Mult: operator.mul,
    ast.Add: operator.add,
    ast.Sub: operator.sub,
}


@dataclass(frozen=True, slots=True)
class SettingOption:
    name: str
    section: str
    """The first word of the comment above the field's group (``# proxy (hot path)``)."""
    kind: str
    """``str``, ``int``, ``float``, ``bool``, ``path``, ``choice`` or ``json`` (dicts, lists)."""
    default: Any
    doc: str
    choices: tuple[str, ...] = ()

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def summary(self) -> str:
        """The docstring's first sentence, on one line."""
        text = " ".join(self.doc.split()).replace("``", "")
        end = _SENTENCE_END.search(text)
        return text if end is None else text[: end.start() + 1]

    def help(self) -> str:
        default = self.default
        if default == "":
            shown = "empty"
        elif self.kind == "json":
            shown = json.dumps(default)
        elif self.kind == "bool":
            shown = "on" if default else "off"
        elif self.name.endswith("_bytes") and default:
            shown = _bytes(default)
        else:
            shown = str(default)
        # argparse formats help with %: a literal percent sign must be doubled
        return f"{self.summary} [${self.env}; default: {shown}]".replace("%", "%%")


def setting_options(source: Path = SETTINGS_SOURCE) -> list[SettingOption]:
    """Every field of ``Settings``, in declaration order."""
    text = source.read_text(encoding="utf-8")
    module = ast.parse(text)
    constants = _module_constants(module)
    cls = next(
        node
        for node in module.body
        if isinstance(node, ast.ClassDef) and node.name == _SETTINGS_CLASS
    )
    lines = text.splitlines()
    options: list[SettingOption] = []
    body = cls.body
    for index, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        if node.target.id == "model_config" or node.value is None:
            continue
        following = body[index + 1] if index + 1 < len(body) else None
        doc = ""
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            doc = following.value.value
        kind, choices = _kind(node.annotation)
        options.append(
            SettingOption(
                name=node.target.id,
                section=_section(lines, node.lineno),
                kind=kind,
                default=_default(node.value, constants),
                doc=doc,
                choices=choices,
            )
        )
    return options


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n % size == 0:
            return f"{n // size} {unit}"
    return str(n)


def parse_json(value: str) -> Any:
    """An option value for a dict or list setting: JSON, as in its environment variable."""
    try:
        return json.loads(value)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None


def _section(lines: list[str], lineno: int) -> str:
    """The group comment above line ``lineno`` (1-based): the nearest comment line that follows
    a blank line (comments inside a group are not headings)."""
    for i in range(lineno - 2, 0, -1):
        stripped = lines[i].strip()
        if stripped.startswith("class "):
            break
        if stripped.startswith("#") and not lines[i - 1].strip():
            words = stripped.lstrip("#").replace(",", " ").replace(":", " ").split()
            return words[0] if words else ""
    return ""


def _kind(annotation: ast.expr) -> tuple[str, tuple[str, ...]]:
    if isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name):
        outer = annotation.value.id
        if outer == "Annotated" and isinstance(annotation.slice, ast.Tuple):
            return _kind(annotation.slice.elts[0])
        if outer == "Literal":
            elts = (
                annotation.slice.elts
                if isinstance(annotation.slice, ast.Tuple)
                else [annotation.slice]
            )
            return "choice", tuple(str(ast.literal_eval(e)) for e in elts)
        return "json", ()
    if isinstance(annotation, ast.Name):
        simple = {"str": "str", "int": "int", "float": "float", "bool": "bool", "Path": "path"}
        if annotation.id in simple:
            return simple[annotation.id], ()
    return "json", ()


def _default(node: ast.expr, constants: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left = _default(node.left, constants)
        right = _default(node.right, constants)
        return _OPERATORS[type(node.op)](left, right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id == "Path" and node.args:
            return str(_default(node.args[0], constants))
        if node.func.id == "Field":
            for keyword in node.keywords:
                if keyword.arg == "default_factory" and isinstance(keyword.value, ast.Name):
                    return {"dict": {}, "list": []}[keyword.value.id]
                if keyword.arg == "default":
                    return _default(keyword.value, constants)
    return ast.literal_eval(node)


def _module_constants(module: ast.Module) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for node in module.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Constant)
        ):
            found[node.targets[0].id] = node.value.value
    return found
