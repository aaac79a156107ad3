"""``llmtap serve`` lowers its consumer's CPU priority, and only the consumer's: when the proxy and
the batch loop both want the core, the calls win (docs/decisions/2026-12-02-serve-consumer-priority.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import gateway_env
from llmtap.testing.mock_upstream import MockUpstream
from support.gateway import GatewayProcess
from support.proc import listening_on


def _thread_nices(pid: int) -> dict[int, int]:
    nices: dict[int, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        # /proc/<pid>/task/<tid>/stat: "tid (comm) state ..."; nice is the 19th field
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        nices[int(task.name)] = int(fields[16])
    return nices


@pytest.mark.parametrize("nice", ["10", "0"])
def test_only_the_consumer_thread_runs_at_a_lower_priority(
    tmp_path: Path, mock_upstream: MockUpstream, nice: str
) -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    env = gateway_env(mock_upstream, LLMTAP_SERVE_CONSUMER_NICE=nice)
    with GatewayProcess(tmp_path / "data", env=env) as gateway:
        gateway.wait_api()
        assert gateway.process is not None
        [backend] = listening_on(gateway.process.pid, gateway.api_port)
        [proxy] = listening_on(gateway.process.pid, gateway.port)
        backend_threads = _thread_nices(backend)
        # chDB sets some of its own threads' priorities (its memory worker runs at -20): only
        # threads at exactly the consumer's value count as lowered by llmtap
        lowered_to = min(19, base + 10)
        lowered = {tid for tid, value in backend_threads.items() if value == lowered_to}
        if nice == "0":
            assert lowered == set(), backend_threads
        else:
            # the batch loop (and whatever it starts) runs at +10; the main thread, the API's
            # thread and the proxies stay where they were
            assert lowered, backend_threads
            assert backend not in lowered
            assert len(lowered) < len(backend_threads) - 1
        assert set(_thread_nices(proxy).values()) == {base}
        assert set(_thread_nices(gateway.process.pid).values()) == {base}
