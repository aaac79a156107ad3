"""``--only faults-soak``: ``llmtap serve`` under steady mixed traffic, a fault every few minutes.

One embedded gateway (two proxy processes and the backend, as ``llmtap serve --processes 2``
runs them) in front of the mock upstream; ``bench.soak_client`` sends a fixed rate of mixed calls
and writes down every id it was given. Faults, in turn, from the list the fault tests cover
(tests/integration/test_faults_*.py):

* ``proxy-sigkill``: one proxy process SIGKILLed (the OOM killer); the supervisor restarts it.
  Its in-memory window (calls answered, records not yet queued) is the one documented loss;
* ``backend-sigkill``: the consumer + API process SIGKILLed mid-batch; restarted, it redoes the
  uncommitted batch;
* ``queue-disk-full``: the queue's filesystem (a tmpfs of the run's own, so its disk use can be
  read against its retention) filled for a window: the proxies spool, the consumer holds, both
  resume when space returns. Skipped, and said so, where a tmpfs cannot be mounted (not root);
* ``upstream-reset``: for a window every stream is reset by the provider after two chunks.

Every ~10 s the RSS and open file descriptors of every process (supervisor, proxies, backend,
mock, client) and the queue's disk use are sampled. At the end the stored ids are compared with
the client's, exactly (``bench.soak_check``). S3 and broker outages need the distributed
topology and are not part of this run (tests/integration/test_faults_s3_outage.py,
test_kafka_faults.py hold them).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import PAGE, Service, tree, wait_port
from bench.soak_check import compare, curve_summary
from bench.targets import BENCH_DIR, MOCK_PORT, PYTHON

PORT = 18_120
API_PORT = 18_121
SAMPLE_EVERY_S = 10.0
TAIL_S = 20.0
"""Traffic without faults after the last one, so its recovery is inside the run."""
KINDS = ("proxy-sigkill", "queue-disk-full", "backend-sigkill", "upstream-reset")
_KEY_LINE = re.compile(r"^\s+(sk-llmtap-\S+)\s*$", re.MULTILINE)

Log = Callable[[str], None]


@dataclass
class Fault:
    kind: str
    at_s: float
    window_s: float
    started_unix: float = 0.0
    ended_unix: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


def plan(duration_s: float, every_s: float, kinds: list[str]) -> list[Fault]:
    """A fault every ``every_s``, kinds in turn; each window ends ``TAIL_S`` before traffic."""
    window = min(30.0, every_s / 2)
    faults: list[Fault] = []
    at = every_s
    while at + window + TAIL_S <= duration_s:
        kind = kinds[len(faults) % len(kinds)]
        faults.append(
            Fault(kind, at, window if kind in ("queue-disk-full", "upstream-reset") else 0)
        )
        at += every_s
    return faults


class QueueDisk:
    """A tmpfs for the queue alone: filled during ``queue-disk-full``, its use read throughout."""

    def __init__(self, path: Path, size_mib: int) -> None:
        self.path = path
        self.size_mib = size_mib
        self.mounted = False
        self.refused = ""

    def mount(self) -> bool:
        self.path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mib}m,mode=0700", "tmpfs", self.path],
            capture_output=True,
            text=True,
            check=False,
        )
        self.mounted = done.returncode == 0
        self.refused = done.stderr.strip()
        return self.mounted

    def used_bytes(self) -> int:
        stat = os.statvfs(self.path)
        return (stat.f_blocks - stat.f_bfree) * stat.f_frsize

    def fill(self) -> None:
        chunk = b"\0" * (1 << 20)
        fd = os.open(self.path / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                os.write(fd, chunk)
        except OSError:
            pass  # ENOSPC: full, as wanted
        finally:
            os.close(fd)

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.path / "filler").unlink()

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", self.path], check=False, capture_output=True)
            self.mounted = False


def listeners(port: int, pids: list[int]) -> list[int]:
    """Which of ``pids`` hold a socket listening on ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{f[9]}]")
    found = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        links = set()
        for fd in fds:
            # one file closed between the listing and its readlink must not hide the process
            # (a busy backend did vanish from whole samples that way: "backend 0 MB/0 fds")
            with contextlib.suppress(OSError):
                links.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        if inodes & links:
            found.append(pid)
    return sorted(found)


def rss_and_fds(pid: int) -> tuple[int, int] | None:
    try:
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        return None
    return (rss, fds) if rss else None  # a zombie (exited, not yet reaped) is not a process


class Sampler:
    """RSS and open fds per role, summed over the role's processes, and the queue's disk."""

    def __init__(self, root: int, mock: int | None, client: int, queue_db: Path) -> None:
        self.root, self.mock, self.client, self.queue_db = root, mock, client, queue_db
        self.samples: list[dict[str, Any]] = []

    def roles(self) -> dict[str, list[int]]:
        pids = tree(self.root)
        proxies = listeners(PORT, pids)
        backend = listeners(API_PORT, pids)
        other = [p for p in pids if p not in proxies and p not in backend and p != self.root]
        found = {"supervisor": [self.root], "proxy": proxies, "backend": backend, "other": other}
        found["mock"] = [self.mock] if self.mock else []
        found["client"] = [self.client]
        return found

    def sample(self, t_s: float, disk: QueueDisk) -> dict[str, Any]:
        row: dict[str, Any] = {"t_s": round(t_s, 1)}
        for role, pids in self.roles().items():
            got = [x for x in map(rss_and_fds, pids) if x is not None]
            row[role] = {
                "n": len(got),
                "rss_mb": round(sum(r for r, _ in got) / 2**20, 1),
                "fds": sum(f for _, f in got),
            }
        row["queue"] = self.queue_use(disk)
        self.samples.append(row)
        return row

    def queue_use(self, disk: QueueDisk) -> dict[str, Any]:
        files = sum(
            p.stat().st_size
            for p in self.queue_db.parent.glob(self.queue_db.name + "*")
            if p.is_file()
        )
        use: dict[str, Any] = {"files_mb": round(files / 2**20, 2)}
        if disk.mounted:
            use["fs_used_mb"] = round(disk.used_bytes() / 2**20, 2)
        try:
            conn = sqlite3.connect(f"file:{self.queue_db}?mode=ro", uri=True, timeout=2.0)
            try:
                count, oldest = conn.execute(
                    "SELECT COUNT(*), MIN(timestamp_ms) FROM messages"
                ).fetchone()
            finally:
                conn.close()
            use["messages"] = count
            if oldest is not None:
                use["oldest_s"] = round(time.time() - oldest / 1000, 1)
        except sqlite3.Error as exc:
            use["error"] = str(exc)[:80]
        return use


def proxy_counters(samples: int = 12) -> dict[str, float]:
    """Each proxy process keeps its own counters; new connections land on either (SO_REUSEPORT),
    so several reads see both: the largest value of each counter is kept."""
    found: dict[str, float] = {}
    for _ in range(samples):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/_llmtap/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            continue
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.partition(" ")
                found[name] = max(found.get(name, 0.0), float(value))
    return found


def run_faults_soak(
    run_dir: Path,
    logs: Path,
    rate: float,
    duration_s: float,
    every_s: float,
    retention_s: float,
    disk_mib: int,
    log: Log,
) -> dict[str, Any]:
    data = run_dir / "faults-soak-data"
    shutil.rmtree(data, ignore_errors=True)
    disk = QueueDisk(run_dir / "faults-soak-queue", disk_mib)
    kinds = list(KINDS)
    if not disk.mount():
        log(f"  no tmpfs for the queue ({disk.refused}): the disk-full fault is left out")
        kinds.remove("queue-disk-full")
    queue_db = (disk.path if disk.mounted else data) / "queue.db"
    env = {
        "LLMTAP_OPENAI_BASE_URL": f"http://127.0.0.1:{MOCK_PORT}",
        "LLMTAP_ANTHROPIC_BASE_URL": f"http://127.0.0.1:{MOCK_PORT}",
        "LLMTAP_API_PORT": str(API_PORT),
        "LLMTAP_QUEUE_URL": f"sqlite:///{queue_db}?retention_ms={int(retention_s * 1000)}",
    }
    argv = [PYTHON, "-m", "llmtap", "--data-dir", str(data), "serve", "--host", "127.0.0.1"]
    argv += ["--port", str(PORT), "--processes", "2"]
    serve = Service("llmtap-soak", argv, PORT, "0-1", logs / "faults-soak-serve.log", env=env)
    faults = plan(duration_s, every_s, kinds)
    calls = run_dir / "faults-soak-calls.tsv"
    flag = run_dir / "faults-soak-reset-streams"
    flag.unlink(missing_ok=True)
    try:
        with serve:
            wait_port(API_PORT, 120)
            found = _KEY_LINE.search(serve.log_path.read_text(errors="replace"))
            key = found.group(1) if found else None
            result = _drive(serve, disk, faults, rate, duration_s, calls, flag, queue_db, log)
            result["counters"] = proxy_counters()
            result["comparison"] = compare(calls, data / "records.db", faults, API_PORT, key, log)
            serve_log = serve.log_path.read_text(errors="replace")
    finally:
        flag.unlink(missing_ok=True)
        disk.free()
        disk.unmount()
    result["log_lines"] = {
        sign: serve_log.count(sign)
        for sign in (
            "exited with code -9; restarting",
            "could not keep",
            "body store refused a pack",
            "dead-lettering",
            "Traceback",
        )
    }
    result["settings"] = {
        "rate": rate,
        "duration_s": duration_s,
        "fault_every_s": every_s,
        "queue_retention_s": retention_s,
        "queue_disk_mib": disk_mib if kinds.count("queue-disk-full") else None,
        "proxy_processes": 2,
        "kind": "hour" if duration_s >= 3600 else "validation",
    }
    return result


def _drive(
    serve: Service,
    disk: QueueDisk,
    faults: list[Fault],
    rate: float,
    duration_s: float,
    calls: Path,
    flag: Path,
    queue_db: Path,
    log: Log,
) -> dict[str, Any]:
    assert serve.proc is not None
    cfg = {
        "port": PORT,
        "rate": rate,
        "duration_s": duration_s,
        "calls_file": str(calls),
        "reset_flag": str(flag),
        "connections": 32,
    }
    mock = listeners(MOCK_PORT, [int(p) for p in os.listdir("/proc") if p.isdigit()])
    argv = ["taskset", "-c", "0-1", PYTHON, "-m", "bench.soak_client", json.dumps(cfg)]
    client = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=BENCH_DIR)
    sampler = Sampler(serve.proc.pid, mock[0] if mock else None, client.pid, queue_db)
    t0 = time.monotonic()
    next_sample = 0.0
    pending = list(faults)
    active: list[Fault] = []
    while client.poll() is None:
        now = time.monotonic() - t0
        if now >= next_sample:
            row = sampler.sample(now, disk)
            next_sample += SAMPLE_EVERY_S
            if len(sampler.samples) % 6 == 1:
                log(
                    f"  t={now:5.0f}s proxies {row['proxy']['rss_mb']} MB/{row['proxy']['fds']} fds,"
                    f" backend {row['backend']['rss_mb']} MB/{row['backend']['fds']} fds,"
                    f" queue {row['queue'].get('messages')} msgs {row['queue']['files_mb']} MB"
                )
        while pending and now >= pending[0].at_s:
            fault = pending.pop(0)
            _start(fault, sampler, disk, flag, log)
            active.append(fault)
        for fault in list(active):
            if _finished(fault, now, sampler, disk, flag):
                active.remove(fault)
                log(f"  {fault.kind} over: {fault.detail}")
        time.sleep(0.25)
    for fault in active:  # the client ended first (it should not): close every window
        _finished(fault, float("inf"), sampler, disk, flag)
    out, err = client.communicate(timeout=60)
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    if client.returncode != 0 or not lines:
        raise RuntimeError(f"soak client failed: {err.decode()[-2000:]}")
    return {
        "client": json.loads(lines[-1]),
        "faults": [vars(f) for f in faults],
        "samples": sampler.samples,
        "processes": curve_summary(sampler.samples),
    }


def _start(fault: Fault, sampler: Sampler, disk: QueueDisk, flag: Path, log: Log) -> None:
    fault.started_unix = time.time()
    roles = sampler.roles()
    if fault.kind in ("proxy-sigkill", "backend-sigkill"):
        pids = roles["proxy" if fault.kind == "proxy-sigkill" else "backend"]
        if not pids:
            fault.detail["skipped"] = "no such process listening"
            return
        fault.detail["pid"] = pids[0]
        fault.detail["before"] = pids
        os.kill(pids[0], signal.SIGKILL)
    elif fault.kind == "queue-disk-full":
        disk.fill()
        fault.detail["fs_used_mb"] = round(disk.used_bytes() / 2**20, 1)
    elif fault.kind == "upstream-reset":
        flag.touch()
    log(f"  fault: {fault.kind} at t={fault.at_s:.0f}s {fault.detail}")


def _finished(fault: Fault, now: float, sampler: Sampler, disk: QueueDisk, flag: Path) -> bool:
    """True once the fault is over: a window's time is up, or the killed process is back."""
    if fault.kind in ("proxy-sigkill", "backend-sigkill"):
        if "skipped" in fault.detail:
            return True
        role = "proxy" if fault.kind == "proxy-sigkill" else "backend"
        back = sampler.roles()[role]
        if len(back) == len(fault.detail["before"]) and fault.detail["pid"] not in back:
            fault.ended_unix = time.time()
            fault.detail["restarted_after_s"] = round(fault.ended_unix - fault.started_unix, 1)
            return True
        if now - fault.at_s > 120:
            fault.ended_unix = time.time()
            fault.detail["restarted_after_s"] = None  # not back in two minutes: a finding
            return True
        return False
    if now < fault.at_s + fault.window_s:
        return False
    if fault.kind == "queue-disk-full":
        disk.free()
    elif fault.kind == "upstream-reset":
        flag.unlink(missing_ok=True)
    fault.ended_unix = time.time()
    return True


__all__ = ["Fault", "plan", "run_faults_soak"]
