"""Plain (non-streamed) load with wrk: one run, its latency percentiles, and wrk's own CPU."""

from __future__ import annotations

import json
import os
import resource
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LUA = Path(__file__).resolve().parent.parent / "post.lua"


@dataclass(frozen=True)
class Load:
    url: str
    headers: dict[str, str]
    body_file: Path


def run_wrk(
    load: Load, *, connections: int, duration_s: float, core: str, threads: int = 1
) -> dict[str, Any]:
    """Closed-loop load: ``connections`` keep-alive connections each sending back to back."""
    env = {
        **os.environ,
        "BENCH_BODY_FILE": str(load.body_file),
        "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in load.headers.items()),
    }
    argv = ["taskset", "-c", core, "wrk", "--latency", "-s", str(LUA)]
    argv += ["-t", str(threads), "-c", str(connections), "-d", f"{duration_s:.0f}s"]
    argv += ["--timeout", "10s", load.url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=duration_s + 60)
    # wrk is the only child reaped meanwhile (servers are reaped when stopped), so the delta of
    # the children's rusage is wrk's own CPU time.
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result (exit {proc.returncode}):\n{text}\n{err.decode()}")
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = result["duration_us"] / 1e6
    result["rps"] = result["requests"] / seconds if seconds else 0.0
    result["cpu_s"] = cpu_s
    result["cpu_percent"] = 100.0 * cpu_s / seconds if seconds else 0.0
    result["errors_total"] = sum(result["errors"].values())
    return result
