"""The faults soak's verdicts: the client's ids against the stored ones, and the process curves.

Ids: every call the client was given an id for (``ok``: the whole answer; ``cut``: the head, then
the body ended early — a provider reset, or a proxy killed mid-answer) is owed a row, once.
The one documented loss is a SIGKILLed proxy's in-memory window (docs/architecture.md, "Honest
bounds"): a missing id answered within ``KILL_WINDOW_S`` before a proxy kill (or cut by it) is
counted there, apart; any other missing id, any id stored twice, any row no client was given an
id for (other than calls whose answer never reached the client) and any difference between the
records store and the analytics store is a failure.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

KILL_WINDOW_S = (1.0, 0.5)
"""(before, after) a proxy SIGKILL: the calls answered in it may have died in its memory. Far
wider than the measured window (tens of milliseconds), so a shipper holding records back for
longer still shows as loss outside it."""
SETTLE_TIMEOUT_S = 300.0


def read_calls(path: Path) -> list[tuple[float, str, str, str]]:
    """(unix time, outcome, id, kind) per call, as the client wrote them."""
    calls = []
    for line in path.read_text().splitlines():
        t, outcome, request_id, kind = line.split("\t")
        calls.append((float(t), outcome, request_id, kind))
    return calls


def stored_ids(records_db: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{records_db}?mode=ro", uri=True, timeout=10.0)
    try:
        return [r[0] for r in conn.execute("SELECT request_id FROM requests")]
    finally:
        conn.close()


def claimed(records_db: Path, ids: Sequence[str]) -> int:
    """How many of ``ids`` are rows stored beside another under a fresh id (invariant 13)."""
    if not ids:
        return 0
    conn = sqlite3.connect(f"file:{records_db}?mode=ro", uri=True, timeout=10.0)
    try:
        n = 0
        for request_id in ids:
            (props,) = conn.execute(
                "SELECT properties FROM requests WHERE request_id = ?", (request_id,)
            ).fetchone()
            n += "llmtap-claimed-request-id" in str(props)
        return n
    finally:
        conn.close()


def analytics_count(api_port: int, key: str | None) -> int | None:
    if key is None:
        return None
    request = urllib.request.Request(
        f"http://127.0.0.1:{api_port}/v1/metrics", headers={"authorization": f"Bearer {key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            count: int = json.loads(reply.read())["totals"]["requests"]
            return count
    except (OSError, ValueError, KeyError):
        return None


def compare(
    calls_file: Path,
    records_db: Path,
    faults: Sequence[Any],
    api_port: int,
    key: str | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    calls = read_calls(calls_file)
    given = [(t, outcome, rid) for t, outcome, rid, _ in calls if outcome in ("ok", "cut")]
    owed = {rid for _, _, rid in given}
    # wait until the stores have everything, or have stopped moving for a while
    started = time.monotonic()
    history: list[int] = []
    while True:
        stored = stored_ids(records_db)
        history.append(len(stored))
        if owed <= set(stored) or (len(history) > 15 and history[-1] == history[-15]):
            break
        if time.monotonic() - started > SETTLE_TIMEOUT_S:
            break
        time.sleep(2.0)
    settle_s = time.monotonic() - started
    analytics = None
    for _ in range(30):  # the analytics store may trail the records store by a batch
        analytics = analytics_count(api_port, key)
        if analytics == len(stored):
            break
        time.sleep(2.0)

    kills = [f.started_unix for f in faults if f.kind == "proxy-sigkill" and f.started_unix]
    before, after = KILL_WINDOW_S

    def in_window(t: float) -> bool:
        return any(k - before <= t <= k + after for k in kills)

    def during_a_fault(t: float) -> bool:
        # a process restarting, a full disk, a provider resetting: from its start to a few
        # seconds after its end (connections to a killed proxy fail when next used)
        return any(
            f.started_unix - 1.0 <= t <= max(f.ended_unix, f.started_unix) + 5.0
            for f in faults
            if f.started_unix
        )

    stored_set = set(stored)
    missing = [(t, outcome, rid) for t, outcome, rid in given if rid not in stored_set]
    in_kill = [m for m in missing if in_window(m[0])]
    elsewhere = [m for m in missing if not in_window(m[0])]
    extra = sorted(stored_set - owed)
    failed: dict[str, int] = {}
    quiet_failures = 0
    for t, outcome, _, _ in calls:
        if outcome.startswith("fail:"):
            failed[outcome[5:]] = failed.get(outcome[5:], 0) + 1
            quiet_failures += not during_a_fault(t)
    result = {
        "calls": len(calls),
        "ids_given": len(given),
        "ids_given_ok": sum(1 for _, o, _ in given if o == "ok"),
        "ids_given_cut": sum(1 for _, o, _ in given if o == "cut"),
        "ids_given_twice": len(given) - len(owed),
        "no_answer": failed,
        "no_answer_outside_faults": quiet_failures,
        "stored_rows": len(stored),
        "stored_twice": len(stored) - len(stored_set),
        "analytics_count": analytics,
        "lost_in_proxy_sigkill_window": len(in_kill),
        "lost_in_proxy_sigkill_window_cut": sum(1 for m in in_kill if m[1] == "cut"),
        "proxy_sigkills": len(kills),
        "lost_elsewhere": len(elsewhere),
        "lost_elsewhere_examples": [f"{t:.3f} {o} {rid}" for t, o, rid in elsewhere[:10]],
        "stored_without_a_client_id": len(extra),
        "stored_under_a_claimed_id": claimed(records_db, extra),
        "settle_s": round(settle_s, 1),
    }
    result["exact"] = (
        not elsewhere
        and result["stored_twice"] == 0
        and result["ids_given_twice"] == 0
        and result["stored_under_a_claimed_id"] == 0
        and analytics == len(stored)
    )
    log(
        f"  ids: {len(given)} given, {len(stored)} stored, {len(in_kill)} lost in"
        f" {len(kills)} proxy-SIGKILL window(s), {len(elsewhere)} lost elsewhere,"
        f" {len(extra)} stored without a client id, analytics {analytics}"
    )
    return result


def curve_summary(samples: list[dict[str, Any]], points: int = 13) -> dict[str, Any]:
    """Per role and measure: first, last, min, max after warm-up, and a compact curve of
    ``points`` values evenly spread over the run."""
    summary: dict[str, Any] = {}
    if not samples:
        return summary
    roles = [k for k in samples[0] if k not in ("t_s", "queue")]
    step = max(1, (len(samples) - 1) // (points - 1)) if len(samples) > 1 else 1
    picked = samples[::step]
    for role in roles:
        for measure in ("rss_mb", "fds"):
            values = [s[role][measure] for s in samples if s[role]["n"]]
            if not values:
                continue
            summary[f"{role}.{measure}"] = {
                "first": values[0],
                "last": values[-1],
                "min": min(values),
                "max": max(values),
                "curve": [s[role][measure] for s in picked],
            }
    for measure in ("files_mb", "messages", "oldest_s"):
        values = [s["queue"][measure] for s in samples if measure in s["queue"]]
        if values:
            summary[f"queue.{measure}"] = {
                "first": values[0],
                "last": values[-1],
                "min": min(values),
                "max": max(values),
                "curve": [s["queue"].get(measure) for s in picked],
            }
    summary["curve_t_s"] = [s["t_s"] for s in picked]
    return summary
