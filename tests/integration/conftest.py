"""The gateway as users run it: ``llmtap serve`` in a child process, the mock upstream as the
provider, and the stores read back the way ``llmtap requests`` does."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from llmtap.stores.bodies.port import BodyStore
from llmtap.stores.factory import open_body_store, open_records_store
from llmtap.stores.records.store import RecordsStore
from llmtap.stores.row import RequestRow
from llmtap.testing.mock_upstream import MockUpstream
from support.gateway import GatewayProcess
from support.probes import wait_for
from support.tls import TrustedMock

RowWaiter = Callable[..., RequestRow]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``over_tls`` run twice, with the mock upstream over plain HTTP and over TLS;
    every other test gets the plain one (one parameter for all, so they share its fixtures)."""
    if "upstream_scheme" in metafunc.fixturenames:
        over_tls = metafunc.definition.get_closest_marker("over_tls") is not None
        schemes = ["http", "https"] if over_tls else ["http"]
        metafunc.parametrize("upstream_scheme", schemes, indirect=True, scope="session")


@pytest.fixture(scope="session")
def upstream_scheme(request: pytest.FixtureRequest) -> str:
    scheme: str = getattr(request, "param", "http")
    return scheme


@pytest.fixture(scope="session")
def mock_upstream(request: pytest.FixtureRequest, upstream_scheme: str) -> Iterator[MockUpstream]:
    if upstream_scheme == "https":
        with TrustedMock(request.getfixturevalue("pki")) as tls_mock:
            yield tls_mock
    else:
        with MockUpstream() as mock:
            yield mock


def gateway_env(mock: MockUpstream, **extra: str) -> dict[str, str]:
    # over TLS the gateway trusts the test CA the way Python tools are told to: SSL_CERT_FILE
    trust = {"SSL_CERT_FILE": mock.ca_file} if isinstance(mock, TrustedMock) else {}
    return {
        "LLMTAP_OPENAI_BASE_URL": mock.url,
        "LLMTAP_ANTHROPIC_BASE_URL": mock.url,
        "LLMTAP_BATCH_MAX_WAIT_S": "0.05",
        **trust,
        **extra,
    }


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, mock_upstream: MockUpstream
) -> Iterator[GatewayProcess]:
    data = tmp_path_factory.mktemp("gateway") / "data"
    with GatewayProcess(data, env=gateway_env(mock_upstream)) as gw:
        yield gw


@pytest.fixture(scope="module")
def records(gateway: GatewayProcess) -> Iterator[RecordsStore]:
    store = open_records_store(gateway.records_url)
    yield store
    store.close()


@pytest.fixture(scope="module")
def bodies(gateway: GatewayProcess) -> Iterator[BodyStore]:
    store = open_body_store(gateway.bodies_url)
    yield store
    store.close()


def wait_row_in(store: RecordsStore, request_id: str, timeout_s: float = 20.0) -> RequestRow:
    return wait_for(
        lambda: store.get_request(None, request_id),
        timeout_s=timeout_s,
        what=f"the record of {request_id}",
    )


@pytest.fixture(scope="module")
def wait_row(records: RecordsStore) -> RowWaiter:
    def waiter(request_id: str, timeout_s: float = 20.0) -> RequestRow:
        return wait_row_in(records, request_id, timeout_s)

    return waiter


@pytest.fixture
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``*_PROXY``/``NO_PROXY`` from the environment (the egress tests set their own)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
