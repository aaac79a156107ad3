"""The machine and the versions a result was measured with."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from bench.targets import PYTHON, ROOT, WORK


def _run(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    return (out.stdout + out.stderr).decode(errors="replace").strip()


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 2**20
    return 0.0


def _py_version(python: str, module: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({module!r}))"
    return _run([python, "-c", code]).splitlines()[-1]


def machine() -> dict[str, object]:
    nginx = re.search(r"nginx/(\S+)", _run(["nginx", "-v"]))
    wrk = re.search(r"wrk (\S+)", _run(["wrk", "-v"]))
    portkey_pkg = WORK / "portkey/node_modules/@portkey-ai/gateway/package.json"
    portkey = json.loads(portkey_pkg.read_text())["version"] if portkey_pkg.exists() else "n/a"
    git = _run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"])
    return {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(_mem_total_gib(), 1),
        "kernel": platform.release(),
        "versions": {
            "llmtap": f"{_py_version(PYTHON, 'llmtap')} (git {git}{', src modified' if dirty else ''})",
            "python": _run([PYTHON, "-c", "import sys; print(sys.version.split()[0])"]),
            "uvloop": _py_version(PYTHON, "uvloop"),
            "httptools": _py_version(PYTHON, "httptools"),
            "litellm": _py_version(str(WORK / "litellm/bin/python"), "litellm"),
            "portkey_gateway": portkey,
            "node": _run(["node", "--version"]),
            "nginx": nginx.group(1) if nginx else "n/a",
            "wrk": wrk.group(1) if wrk else "n/a",
        },
    }
