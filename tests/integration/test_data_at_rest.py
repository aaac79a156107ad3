"""What ``llmtap serve`` leaves on disk: readable by its owner only, and no secret in any byte.

One gateway on a data directory that an older version left world-readable (0755), a few calls
(streamed and not, with bodies, with secrets in headers whose names no list would know), then a
walk over every byte and every permission under the data directory.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from conftest import gateway_env, wait_row_in
from llmtap.stores.factory import open_records_store
from llmtap.testing.mock_upstream import MockUpstream
from support.gateway import GatewayProcess
from support.probes import files_containing, wait_for

PROMPT: Any = [{"role": "user", "content": "hello"}]
CANARY = f"sk-canary-{uuid.uuid4().hex}"
SECRET_NAMED = ["api_key", "openai-api-key", "x-foo-key", "x-auth-token", "cookie", "x-secret"]


@pytest.fixture(scope="module")
def old_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("at-rest") / "data"
    (data / "bodies").mkdir(parents=True)
    data.chmod(0o755)
    (data / "bodies").chmod(0o755)
    return data


@pytest.fixture(scope="module")
def served(old_data_dir: Path, mock_upstream: MockUpstream) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(old_data_dir, env=gateway_env(mock_upstream)).start()
    try:
        oai = openai.OpenAI(base_url=gateway.url + "/v1", api_key=CANARY, max_retries=0)
        extra = {name: CANARY for name in SECRET_NAMED}
        ids = [
            oai.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=PROMPT, extra_headers=extra
            ).headers["helicone-id"],
            oai.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=PROMPT, stream=True, extra_headers=extra
            ).headers["helicone-id"],
        ]
        # a response header with a secret the provider sets (a session cookie, a token)
        mock_upstream.enqueue_reply(
            200,
            [
                ("content-type", "application/json"),
                ("set-cookie", f"session={CANARY}"),
                ("x-upstream-session-token", CANARY),
            ],
            b'{"id": "x", "object": "chat.completion", "choices": []}',
        )
        response = httpx.post(
            gateway.url + "/v1/chat/completions?api_key=" + CANARY,
            json={"model": "gpt-4o-mini", "messages": PROMPT},
            headers={"authorization": "Bearer x", "x-goog-api-key": CANARY},
        )
        ids.append(response.headers["helicone-id"])
        store = open_records_store(gateway.records_url)
        try:
            for request_id in ids:
                wait_row_in(store, request_id)
        finally:
            store.close()
        # the bodies were stored too (a pack under bodies/)
        wait_for(lambda: any((gateway.data_dir / "bodies").rglob("*.pack")), what="a body pack")
        yield gateway
    finally:
        gateway.stop()


def test_secrets_in_any_header_name_reach_no_stored_byte(
    served: GatewayProcess, mock_upstream: MockUpstream
) -> None:
    # the provider did get them: only storage forgets them
    sent = [r.headers for r in mock_upstream.requests]
    assert any(h.get("openai-api-key") == CANARY for h in sent)
    assert files_containing(served.data_dir, CANARY.encode()) == []


def test_every_stored_file_is_readable_by_its_owner_only(served: GatewayProcess) -> None:
    readable: list[str] = []
    for folder, dirs, names in os.walk(served.data_dir):
        for name in [*dirs, *names, "."]:
            path = Path(folder) / name
            try:
                mode = path.lstat().st_mode
            except FileNotFoundError:
                continue  # a journal or merge part that came and went
            if stat.S_ISLNK(mode):
                continue
            if mode & 0o077:
                readable.append(f"{oct(stat.S_IMODE(mode))} {path.relative_to(served.data_dir)}")
    assert readable == []
    assert stat.S_IMODE(served.data_dir.stat().st_mode) == 0o700
