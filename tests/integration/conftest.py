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

RowWaiter = Callable[..., RequestRow]


@pytest.fixture(scope="session")
def mock_upstream() -> Iterator[MockUpstream]:
    with MockUpstream() as mock:
        yield mock


def gateway_env(mock: MockUpstream, **extra: str) -> dict[str, str]:
    return {
        "LLMTAP_OPENAI_BASE_URL": mock.url,
        "LLMTAP_ANTHROPIC_BASE_URL": mock.url,
        "LLMTAP_BATCH_MAX_WAIT_S": "0.05",
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
