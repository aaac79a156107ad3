"""The shared conftest's gate on real services: a marked test runs when its service answers,
is skipped locally when it does not, and fails under CI so a dead service cannot pass quietly.

Each case runs pytest in a subprocess on a scratch project that uses tests/conftest.py as is.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CONFTEST = Path(__file__).parents[1] / "conftest.py"

TESTS = """
import os
import pytest

@pytest.mark.kafka
def test_marked():
    pass

def test_fixture(kafka_bootstrap):
    assert kafka_bootstrap == os.environ["LLMTAP_TEST_KAFKA_BOOTSTRAP"]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    (tmp_path / "test_gate.py").write_text(TESTS)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nfilterwarnings = error\nasyncio_default_fixture_loop_scope = function\n"
        "markers =\n    postgres\n    kafka\n    s3\n"
        # the conftest loads the test helpers' plugins (support.tls)
        f"pythonpath = {CONFTEST.parent}\n"
    )
    return tmp_path


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    # a port that was free a moment ago and has no listener now
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def run_pytest(project: Path, bootstrap: str, ci: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["LLMTAP_TEST_KAFKA_BOOTSTRAP"] = bootstrap
    if ci:
        env["CI"] = "true"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(project)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout + done.stderr


def test_service_that_answers_runs_its_tests(project: Path, listening: int) -> None:
    out = run_pytest(project, f"127.0.0.1:{listening}", ci=True)
    assert "2 passed" in out, out


def test_missing_service_skips_locally_with_the_way_to_start_it(
    project: Path, closed_port: int
) -> None:
    out = run_pytest(project, f"127.0.0.1:{closed_port}", ci=False)
    assert "2 skipped" in out, out
    assert "scripts/services/kafka.sh start" in out, out


def test_missing_service_fails_under_ci(project: Path, closed_port: int) -> None:
    out = run_pytest(project, f"127.0.0.1:{closed_port}", ci=True)
    assert "2 errors" in out, out
    assert f"kafka is not reachable at 127.0.0.1:{closed_port}" in out, out
