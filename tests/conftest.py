"""Shared test fixtures: where the real services are, and what happens when one is missing.

``scripts/test`` starts PostgreSQL, Kafka and SeaweedFS (``scripts/services/all.sh start``) and
exports their addresses; the defaults below match what those scripts start, so a plain ``pytest``
works after ``all.sh start`` too. A test marked ``postgres``/``kafka``/``s3``, or one using the
matching fixture, runs only when that service accepts connections: otherwise it is skipped
locally, and fails under CI (``CI=true``), where a silently skipped service test would hide
breakage. Area-specific fixtures belong in ``tests/<area>/conftest.py``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

# the test certificate authority (``pki``) for every TLS test
pytest_plugins = ["support.tls"]

S3_TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "llmtap-test",
    "AWS_SECRET_ACCESS_KEY": "llmtap-test-secret",
    "AWS_REGION": "us-east-1",
}


@dataclass(frozen=True)
class Service:
    marker: str
    env: str
    default: str
    start_hint: str

    @property
    def address(self) -> str:
        return os.environ.get(self.env) or self.default

    def host_port(self) -> tuple[str, int]:
        address = self.address
        if "://" not in address:  # Kafka bootstrap: host:port[,host:port...]
            address = "tcp://" + address.split(",")[0]
        parts = urlsplit(address)
        return parts.hostname or "127.0.0.1", parts.port or 0


SERVICES = {
    s.marker: s
    for s in (
        Service(
            "postgres",
            "LLMTAP_TEST_POSTGRES_URL",
            "postgresql://llmtap:llmtap@127.0.0.1:5432/llmtap",
            "scripts/services/postgres.sh start",
        ),
        Service(
            "kafka",
            "LLMTAP_TEST_KAFKA_BOOTSTRAP",
            "127.0.0.1:9092",
            "scripts/services/kafka.sh start",
        ),
        Service(
            "s3",
            "LLMTAP_TEST_S3_ENDPOINT",
            "http://127.0.0.1:8333",
            "scripts/services/seaweedfs.sh start",
        ),
        Service(
            "redis",
            "LLMTAP_TEST_REDIS_URL",
            "redis://127.0.0.1:6390/0",
            "scripts/services/redis.sh start",
        ),
    )
}

_reachable_key = pytest.StashKey[dict[str, bool]]()


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _require(config: pytest.Config, service: Service) -> str:
    """Return the service's address, or skip (locally) / fail (CI) if nothing answers there."""
    seen = config.stash.setdefault(_reachable_key, {})
    if service.marker not in seen:
        seen[service.marker] = _reachable(*service.host_port())
    if not seen[service.marker]:
        message = (
            f"{service.marker} is not reachable at {service.address} "
            f"(set {service.env}, or run {service.start_hint})"
        )
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return service.address


CLICKHOUSE_SKIP = (
    "no ClickHouse server here (none can be installed: Debian's is 18.16, PyPI has only chDB);"
    " set LLMTAP_TEST_CLICKHOUSE_URL=clickhouse://user:pw@host:8123 to run this against one"
)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker, service in SERVICES.items():
        if item.get_closest_marker(marker) is not None:
            _require(item.config, service)
    # a server CI does not have: skipped with the reason shown, never failed
    if item.get_closest_marker("clickhouse") and not os.environ.get("LLMTAP_TEST_CLICKHOUSE_URL"):
        pytest.skip(CLICKHOUSE_SKIP)


@pytest.fixture(scope="session")
def postgres_url(pytestconfig: pytest.Config) -> str:
    """SQLAlchemy/psycopg URL of a database the tests may write to (role may CREATE DATABASE)."""
    return _require(pytestconfig, SERVICES["postgres"])


@pytest.fixture(scope="session")
def kafka_bootstrap(pytestconfig: pytest.Config) -> str:
    """``host:port`` of the Kafka broker; tests may create and delete topics."""
    return _require(pytestconfig, SERVICES["kafka"])


@pytest.fixture(scope="session")
def redis_url(pytestconfig: pytest.Config) -> str:
    """``redis://host:port/db`` of the Redis server; tests share it, so each keeps to keys of
    its own (a unique cache seed, a unique key prefix) and never flushes it."""
    return _require(pytestconfig, SERVICES["redis"])


@pytest.fixture(scope="session")
def s3_endpoint(pytestconfig: pytest.Config) -> Iterator[str]:
    """``http://host:port`` of the S3 server; the AWS_* variables are set to its test credentials."""
    endpoint = _require(pytestconfig, SERVICES["s3"])
    with pytest.MonkeyPatch.context() as patch:
        for name, value in S3_TEST_CREDENTIALS.items():
            if not os.environ.get(name):
                patch.setenv(name, value)
        yield endpoint
