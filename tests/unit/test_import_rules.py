"""Who may import whom inside ``llmtap`` (docs/architecture.md, "Who may import whom").

Every ``import``/``from`` in src/llmtap is read with ``ast`` — inside functions and under
``TYPE_CHECKING`` too, since a type-only import is still a dependency a reader follows — and
checked against ``MAY_IMPORT``. Imports inside one part are free (proxy/ modules may import each
other in any shape). Change the table here and in docs/architecture.md together.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "llmtap"

# The bottom: each imports nothing of llmtap but what is listed.
_BASE = {
    "__init__",
    "errors",
    "settings",
    "record",
    "logs",
    "private_files",
    "sqlite_wal",
    "addresses",
}

# part -> the other parts it may import. A part is a subpackage (``stores``) or a top-level
# module (``serve``); ``__init__`` is the package itself (``from llmtap import __version__``).
MAY_IMPORT: dict[str, set[str]] = {
    "__init__": set(),
    "errors": set(),
    "settings": set(),
    "record": set(),
    "logs": set(),
    "private_files": set(),
    "sqlite_wal": set(),
    "addresses": set(),
    "keys": _BASE,
    "capture": _BASE,
    "queue": _BASE,
    "stores": _BASE | {"keys"},
    "outbound": _BASE,
    "proxy": _BASE | {"keys", "capture", "queue", "stores", "outbound"},
    "ingest": _BASE | {"keys", "capture", "queue", "stores"},
    # signed deliveries from the durable outbox (webhooks, PostHog): they read and write only
    # the records store
    "delivery": _BASE | {"stores", "outbound"},
    # alert rules: checked with the API's filter language, evaluated over the stores' metrics
    "alerts": _BASE | {"stores", "api"},
    "consumer": _BASE | {"keys", "capture", "queue", "stores", "delivery", "alerts"},
    # api/app.py mounts the dashboard (its one import of it); the dashboard reads through api's
    # services (search, metrics, keys, the query gate) and never imports api/app.py back
    "api": _BASE
    | {"keys", "capture", "queue", "stores", "ingest", "dashboard", "delivery", "alerts"},
    "dashboard": _BASE | {"keys", "stores", "api"},
    "show": _BASE | {"stores"},
    # synthetic calls for the dashboard: rows priced by the consumer's cost handler, into stores
    "demo": _BASE | {"queue", "stores", "consumer"},
    "backend": _BASE | {"stores", "consumer", "api"},
    # the proxy child is handed the consumer's pricing (u=cents rate limits)
    "serve": _BASE | {"stores", "proxy", "backend", "demo", "testing", "consumer"},
    "cli_options": _BASE,
    # what each command runs: every import inside its function (``llmtap --help`` pays for none)
    "cli_commands": _BASE
    | {"keys", "stores", "proxy", "consumer", "api", "serve", "show", "demo", "testing", "alerts"},
    "cli_groups": _BASE | {"cli_commands"},
    "cli": _BASE | {"cli_options", "cli_commands", "cli_groups"},
    "__main__": {"cli"},
    # the mock upstream: users and the benchmarks run it; it stands alone
    "testing": set(),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str:
    """``llmtap.stores.records.schema`` -> ``stores``; ``llmtap`` -> ``__init__``."""
    names = module.split(".")
    return names[1] if len(names) > 1 else "__init__"


def imported(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """(line, module) of every llmtap import in the file, relative ones resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, target] if target else base)
            if target != "llmtap":
                yield node.lineno, target
                continue
            for alias in node.names:  # ``from llmtap import stores`` names a part
                name = alias.name
                is_part = (SRC / name).is_dir() or (SRC / f"{name}.py").is_file()
                yield node.lineno, f"llmtap.{name}" if is_part else "llmtap"


def test_every_part_is_in_the_table() -> None:
    parts = {part_of(module_name(p)) for p in SRC.rglob("*.py")}
    assert parts - MAY_IMPORT.keys() == set(), "a new part: give it a row in MAY_IMPORT"


def test_parts_import_only_what_the_table_allows() -> None:
    broken = []
    for path in sorted(SRC.rglob("*.py")):
        module = module_name(path)
        mine = part_of(module)
        for line, target in imported(path, module):
            if target != "llmtap" and not target.startswith("llmtap."):
                continue
            theirs = part_of(target)
            if theirs == mine or theirs in MAY_IMPORT[mine]:
                continue
            where = path.relative_to(ROOT)
            broken.append(f"{where}:{line} ({mine}) imports {target} ({theirs})")
    assert broken == [], "imports against docs/architecture.md:\n" + "\n".join(broken)


def test_nothing_shipped_imports_the_test_helpers() -> None:
    """tests/support/ is test-only: the package and the benchmarks must run without it."""
    offenders = []
    benchmarks = [
        path
        for path in (ROOT / "benchmarks").rglob("*.py")
        # benchmarks/.work holds the peers' installed venvs (git-ignored), not our code
        if not any(part.startswith(".") for part in path.relative_to(ROOT).parts)
    ]
    for path in [*SRC.rglob("*.py"), *benchmarks]:
        for line, target in imported(path, module_name(path) if path.is_relative_to(SRC) else ""):
            if target == "support" or target.startswith(("support.", "tests.")):
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert offenders == [], "test-only helpers imported:\n" + "\n".join(offenders)


def test_the_mock_upstream_stands_alone() -> None:
    """llmtap.testing is the mock provider: it must not reach into the gateway it is used to test
    (a mock that shares the proxy's parsing would agree with the proxy's bugs)."""
    outside = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in (SRC / "testing").rglob("*.py")
        for line, target in imported(path, module_name(path))
        if target.startswith("llmtap") and not target.startswith("llmtap.testing")
    ]
    assert outside == [], "the mock upstream reaches into llmtap:\n" + "\n".join(outside)


# Inside proxy/ the seams are Protocols (proxy/types.py): the exchange and each side of it know
# one another only through them (docs/architecture.md, "proxy/").
PROXY_MUST_NOT_IMPORT = {
    "exchange": {"app", "client", "upstream", "upstream_pool", "server"},
    "upstream": {"exchange", "upstream_pool", "app", "client", "server"},
    "client": {"app", "upstream", "upstream_pool", "server"},
    "app": {"client", "upstream", "upstream_pool", "server"},
    "types": {"app", "client", "exchange", "upstream", "upstream_pool", "server"},
    # proxy/gateway/ (one node for the whole package) sees calls only through proxy/types.py
    "gateway": {"app", "client", "upstream", "upstream_pool", "server"},
}


def _proxy_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted((SRC / "proxy").rglob("*.py")):
        if path.name == "__init__.py" and path.parent == SRC / "proxy":
            continue
        module = module_name(path)
        node = path.relative_to(SRC / "proxy").parts[0].removesuffix(".py")
        graph.setdefault(node, set()).update(
            target.split(".")[2]
            for _, target in imported(path, module)
            if target.startswith("llmtap.proxy.") and target.split(".")[2] != node
        )
    return graph


def test_the_proxy_modules_meet_only_through_their_protocols() -> None:
    graph = _proxy_graph()
    broken = [
        f"proxy/{mine}.py imports proxy/{other}.py"
        for mine, forbidden in PROXY_MUST_NOT_IMPORT.items()
        for other in sorted(graph[mine] & forbidden)
    ]
    assert broken == [], "\n".join(broken)


def test_the_proxy_has_no_import_cycle() -> None:
    graph = _proxy_graph()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            cycle = visit(nxt, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_api_and_the_dashboard_meet_in_one_place() -> None:
    """api/app.py mounts the dashboard; nothing else of api imports it, and the dashboard never
    imports api/app.py back (docs/architecture.md)."""
    broken = []
    for path in sorted((SRC / "api").rglob("*.py")):
        for line, target in imported(path, module_name(path)):
            if part_of(target) == "dashboard" and path.name != "app.py":
                broken.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    for path in sorted((SRC / "dashboard").rglob("*.py")):
        for line, target in imported(path, module_name(path)):
            if target == "llmtap.api.app":
                broken.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert broken == [], "\n".join(broken)
