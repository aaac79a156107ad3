"""The "Faults soak" section of benchmarks/RESULTS.md, kept between its own markers so the other
parts' reports leave it alone (and it leaves theirs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import sections
from bench.sections import update_section

START_MARK = "<!-- faults-soak:start -->"
END_MARK = "<!-- faults-soak:end -->"
PRUNE_INTERVAL_S = 60.0
"""The embedded queue prunes at most this often (``SqliteConsumer.prune_interval_s``)."""


def retention_bound(result: dict[str, Any]) -> dict[str, Any]:
    """Messages the queue may hold at a steady rate: one retention period, two prune intervals
    (the consumer prunes at most once an interval, and a restarted backend starts its interval
    afresh), and the longest fault window's backlog (twice, for slack)."""
    s = result["settings"]
    longest = max([f["window_s"] for f in result["faults"]] + [0.0])
    bound = s["rate"] * (s["queue_retention_s"] + 2 * PRUNE_INTERVAL_S + 2 * longest)
    held = result["processes"].get("queue.messages", {}).get("max")
    return {"bound": int(bound), "max": held, "within": held is not None and held <= bound}


def _row(name: str, v: dict[str, Any]) -> str:
    curve = " ".join(f"{x:g}" if isinstance(x, int | float) else "-" for x in v["curve"])
    return f"| {name} | {v['first']:g} | {v['last']:g} | {v['min']:g} | {v['max']:g} | {curve} |"


def render_section(result: dict[str, Any], machine: dict[str, Any], date: str, file: str) -> str:
    s = result["settings"]
    c = result["comparison"]
    client = result["client"]
    label = (
        "**Validation run** — a short run to check the harness, *not* the hour run"
        if s["kind"] == "validation"
        else "**The hour run**"
    )
    lines = [
        START_MARK,
        "## Faults soak",
        "",
        f"{label}: `llmtap serve --processes 2` (embedded) at {s['rate']:g} calls/s of mixed",
        f"traffic for {s['duration_s']:g} s, a fault every {s['fault_every_s']:g} s; {date}, "
        f"{machine.get('cpu_model', '?')} ({machine.get('nproc', '?')} cores, shared with other work:"
        f" load at the end {machine.get('loadavg', '?')}; llmtap {machine.get('versions', {}).get('llmtap', '?')}). Raw figures: `benchmarks/results/{file}`.",
        "Command: `benchmarks/run --only faults-soak --soak-seconds "
        f"{s['duration_s']:g} --rate {s['rate']:g} --fault-every {s['fault_every_s']:g}`.",
        "",
        "Traffic sent: " + ", ".join(f"{k} {v}" for k, v in client["mix"].items()) + ".",
        f"Client: {client['sent']} calls sent, late sends {client['late_sends']}"
        f" (p99 {client['lateness_ms'].get('99', 0):.0f} ms late), client CPU"
        f" {client['client_cpu_percent']}%.",
        "",
        "| fault | at (s) | window (s) | detail |",
        "| --- | --- | --- | --- |",
    ]
    for f in result["faults"]:
        detail = ", ".join(f"{k} {v}" for k, v in f["detail"].items() if k != "before")
        lines.append(f"| {f['kind']} | {f['at_s']:g} | {f['window_s']:g} | {detail} |")
    no_answer = ", ".join(f"{k} {v}" for k, v in c["no_answer"].items()) or "none"
    lines += [
        "",
        "**Ids, client against stores**"
        + (" — exact" if c["exact"] else " — NOT exact (see the JSON)")
        + ":",
        "",
        "| | calls |",
        "| --- | --- |",
        f"| ids given to clients (whole answer / cut mid-body) | {c['ids_given']}"
        f" ({c['ids_given_ok']} / {c['ids_given_cut']}) |",
        f"| rows in the records store | {c['stored_rows']} |",
        f"| rows counted by the analytics store | {c['analytics_count']} |",
        f"| lost in a proxy-SIGKILL window (the documented bound; {c['proxy_sigkills']} kills)"
        f" | {c['lost_in_proxy_sigkill_window']} (of them cut mid-body:"
        f" {c['lost_in_proxy_sigkill_window_cut']}) |",
        f"| lost anywhere else | {c['lost_elsewhere']} |",
        f"| stored twice / stored under a claimed id | {c['stored_twice']} /"
        f" {c['stored_under_a_claimed_id']} |",
        f"| stored, but the client got no id (answer cut before its head) |"
        f" {c['stored_without_a_client_id']} |",
        f"| calls with no answer (no id; by error) | {no_answer} |",
        f"| of them outside any fault (start -1 s to end +5 s) | {c['no_answer_outside_faults']} |",
        "",
        "**Processes** (sum over the role's processes; RSS in MB, open file descriptors),"
        f" sampled every 10 s; curve = {len(result['processes'].get('curve_t_s', []))} points"
        " spread evenly over the run. A SIGKILLed role restarts small, so its curve dips (a"
        " backend that is starting again, not yet listening, shows under `other`):",
        "",
        "| role.measure | first | last | min | max | curve |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, v in result["processes"].items():
        if name != "curve_t_s" and not name.startswith("queue."):
            lines.append(_row(name, v))
    bound = retention_bound(result)
    lines += [
        "",
        f"**Queue on disk** (its own tmpfs, retention {s['queue_retention_s']:g} s): messages held"
        f" at most {bound['max']}, against {bound['bound']} for the retention at this rate"
        f" ({'within' if bound['within'] else 'OVER'});",
        "",
        "| measure | first | last | min | max | curve |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, v in result["processes"].items():
        if name.startswith("queue."):
            lines.append(_row(name, v))
    counters = result.get("counters", {})
    wanted = (
        "records_spooled",
        "spool_replayed",
        "records_dropped",
        "bodies_dropped",
        "upstream_errors",
        "delivery_failures",
    )
    shown = ", ".join(
        f"`{n}` {counters[f'llmtap_proxy_{n}_total']:g}"
        for n in wanted
        if f"llmtap_proxy_{n}_total" in counters
    )
    lines += [
        "",
        f"Proxy counters at the end (largest of the two live processes; a killed one's are gone):"
        f" {shown}. Log lines: "
        + ", ".join(f"`{k}` {v}" for k, v in result["log_lines"].items())
        + ".",
        END_MARK,
    ]
    return "\n".join(lines) + "\n"


def update_results(path: Path, section: str) -> None:
    """Put the faults soak ``section`` in place of the previous one in RESULTS.md (or at its end)."""
    update_section(path, section, START_MARK, END_MARK)


def kept_section(path: Path) -> str:
    """The faults soak section RESULTS.md holds now ('' if none): a full report keeps it."""
    return sections.kept_section(path, START_MARK, END_MARK)
