"""One report from several runs: parts measured in runs of their own, merged into a main run.

    python -m bench.merge results/<main>.json --unpinned results/<run>.json \\
        --take tls=results/<run>.json --take soak=results/<run>.json -o results/<merged>.json
    benchmarks/run --report results/<merged>.json

``--unpinned`` takes a run made with ``LLMTAP_BENCH_LAYOUT=unpinned`` (its ``overhead`` and
``added_latency_ms``); ``--take part=file`` copies that part of another run as it is. The merged
file says where each part came from (``merged_from``), and RESULTS.md shows it under Method.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _load(path: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data


def merge(main: dict[str, Any], unpinned: str | None, takes: list[str]) -> dict[str, Any]:
    merged = dict(main)
    sources: dict[str, str] = dict(main.get("merged_from", {}))
    if unpinned is not None:
        run = _load(unpinned)
        if _layout_pinned(run):
            raise SystemExit(f"{unpinned} was run pinned: set LLMTAP_BENCH_LAYOUT=unpinned")
        merged["unpinned"] = {
            "overhead": run["overhead"],
            "added_latency_ms": run["added_latency_ms"],
            "loadavg": [run.get("loadavg_start"), run.get("loadavg_end")],
        }
        if "profile_proxy" in run:
            merged["unpinned"]["profile_proxy"] = run["profile_proxy"]
        sources["unpinned"] = Path(unpinned).name
    for take in takes:
        part, _, path = take.partition("=")
        run = _load(path)
        if part not in run:
            raise SystemExit(f"{path} has no part {part!r} (it has {sorted(run)})")
        merged[part] = run[part]
        sources[part] = Path(path).name
    merged["merged_from"] = sources
    return merged


def _layout_pinned(run: dict[str, Any]) -> bool:
    return bool(run.get("layout", {}).get("pinned", True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("main")
    parser.add_argument("--unpinned")
    parser.add_argument("--take", action="append", default=[], metavar="PART=FILE")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    merged = merge(_load(args.main), args.unpinned, args.take)
    merged["file"] = Path(args.output).name
    Path(args.output).write_text(json.dumps(merged, indent=1))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
