"""``Helicone-Fallbacks`` through the real proxy with the official SDKs: targets tried in order,
``Helicone-Fallback-Index`` on the answer, per-target headers and body keys, retries per target,
and every attempt in the record (through the API). Each target's own ``headers`` carry the mock
upstream's knobs, so one mock plays several providers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from support.attempts_pipeline import AttemptsPipeline, attempts_pipeline, refused_port, tag
from support.probes import files_containing, wait_for

PROMPT: Any = [{"role": "user", "content": "say something"}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AttemptsPipeline]:
    with attempts_pipeline(
        tmp_path_factory.mktemp("fallback"),
        allowed_target_hosts=["127.0.0.1"],
        allow_private_targets=True,
    ) as pipeline:
        yield pipeline


def target(url: str, on: list[Any], **headers: str) -> dict[str, Any]:
    return {"target-url": url, "headers": headers, "onCodes": on}


SERVER_ERRORS: list[Any] = [{"from": 500, "to": 599}]


def chat(gw: AttemptsPipeline, key: str, fallbacks: list[Any], **headers: str) -> Any:
    return gw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=PROMPT,
        extra_headers={"x-test": key, "Helicone-Fallbacks": json.dumps(fallbacks), **headers},
    )


def test_three_targets_first_500_then_refused_then_answered(gw: AttemptsPipeline) -> None:
    key = tag()
    fallbacks_before = gw.proxy.metrics.gateway_fallbacks
    dead = f"http://127.0.0.1:{refused_port()}"
    raw = chat(
        gw,
        key,
        [
            target(gw.mock.url, SERVER_ERRORS, **{"x-mock-status": "500"}),
            target(dead, [500]),
            target(gw.mock.url, [500]),
        ],
    )
    assert raw.http_response.status_code == 200
    assert raw.parse().choices[0].message.content
    assert raw.headers["helicone-fallback-index"] == "2"
    assert raw.headers["llmtap-fallback-index"] == "2"
    assert len(gw.seen(key)) == 2  # the refused one never got there
    assert gw.proxy.metrics.gateway_fallbacks == fallbacks_before + 2

    request_id = raw.headers["helicone-id"]
    row = gw.row(request_id)
    assert row.attempts == 3
    assert row.fallback_index == 2
    assert row.status == 200
    detail = gw.api_get(request_id)
    assert detail["fallback_index"] == 2
    log = detail["attempt_log"]
    assert [(a["fallback_index"], a["status"], a.get("error")) for a in log] == [
        (0, 500, None),
        (1, 0, "upstream_connect_error"),
        (2, 200, None),
    ]
    assert log[1]["target"] == dead + "/v1/chat/completions"
    assert all(a["duration_ms"] is not None for a in log)
    assert log[0]["start_ms"] <= log[1]["start_ms"] <= log[2]["start_ms"]
    found = httpx.post(
        gw.backend.url + "/v1/requests/search",
        json={"filter": {"field": "fallback_index", "op": "eq", "value": 2}},
        headers={"Authorization": f"Bearer {gw.key}"},
        timeout=10,
    )
    assert request_id in [r["request_id"] for r in found.json()["data"]]
    assert all("attempt_log" not in r for r in found.json()["data"])  # detail only

    def groups() -> dict[str | None, int]:
        reply = httpx.get(
            gw.backend.url + "/v1/metrics",
            params={"group_by": "fallback_index"},
            headers={"Authorization": f"Bearer {gw.key}"},
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
        return {item["group"]: item["requests"] for item in reply.json()["series"]}

    wait_for(lambda: groups().get("2", 0) >= 1, timeout_s=10, what="the metrics group")


def test_a_status_not_in_on_codes_is_the_answer(gw: AttemptsPipeline) -> None:
    key = tag()
    with pytest.raises(openai.RateLimitError) as caught:
        chat(
            gw,
            key,
            [
                target(gw.mock.url, [500, 503], **{"x-mock-status": "429"}),
                target(gw.mock.url, [500]),
            ],
        )
    assert caught.value.response.headers["helicone-fallback-index"] == "0"
    assert len(gw.seen(key)) == 1


def test_the_last_targets_failure_is_relayed(gw: AttemptsPipeline) -> None:
    key = tag()
    with pytest.raises(openai.InternalServerError) as caught:
        chat(
            gw,
            key,
            [
                target(gw.mock.url, SERVER_ERRORS, **{"x-mock-status": "503"}),
                target(gw.mock.url, SERVER_ERRORS, **{"x-mock-status": "500"}),
            ],
        )
    response = caught.value.response
    assert response.status_code == 500
    assert response.headers["helicone-fallback-index"] == "1"
    assert "llmtap-error" not in response.headers  # the provider's answer, as it sent it
    row = gw.row(response.headers["helicone-id"])
    assert row.attempts == 2 and row.fallback_index == 1


def test_each_target_gets_its_headers_and_body_keys(gw: AttemptsPipeline) -> None:
    key = tag()
    fallbacks = [
        target(gw.mock.url, [500], **{"x-mock-status": "500"}),
        {
            **target(gw.mock.url, [500], authorization="Bearer sk-second"),
            "bodyKeyOverride": {"model": "gpt-4o", "metadata": {"team": "b"}},
        },
    ]
    raw = chat(gw, key, fallbacks)
    assert raw.http_response.status_code == 200
    first, second = gw.seen(key)
    assert first.headers["authorization"] == "Bearer sk-test"
    assert first.json()["model"] == "gpt-4o-mini"
    assert second.headers["authorization"] == "Bearer sk-second"
    assert second.json()["model"] == "gpt-4o"
    assert second.json()["metadata"] == {"team": "b"}
    assert second.json()["messages"] == PROMPT
    # no fallback header nor llmtap's own header reaches a provider
    assert not any(name.startswith(("helicone-", "llmtap-")) for name in second.headers)


def test_the_call_path_is_appended_to_the_target_url(gw: AttemptsPipeline) -> None:
    key = tag()
    with pytest.raises(openai.NotFoundError) as caught:
        chat(gw, key, [target(gw.mock.url + "/prefix/", [500])])
    assert caught.value.response.headers["helicone-fallback-index"] == "0"
    [seen] = gw.seen(key)
    assert seen.path == "/prefix/v1/chat/completions"


def test_each_target_is_retried_before_the_next_one(gw: AttemptsPipeline) -> None:
    key = tag()
    raw = chat(
        gw,
        key,
        [
            target(gw.mock.url, SERVER_ERRORS, **{"x-mock-status": "503"}),
            target(gw.mock.url, SERVER_ERRORS),
        ],
        **{
            "Helicone-Retry-Enabled": "true",
            "Helicone-Retry-Num": "2",
            "Helicone-Retry-Min-Timeout": "10",
        },
    )
    assert raw.http_response.status_code == 200
    assert raw.headers["helicone-fallback-index"] == "1"
    log = gw.api_get(raw.headers["helicone-id"])["attempt_log"]
    assert [(a["fallback_index"], a["status"]) for a in log] == [
        (0, 503),
        (0, 503),
        (0, 503),
        (1, 200),
    ]


def test_a_stream_falls_back_before_its_head(gw: AttemptsPipeline) -> None:
    key = tag()
    stream = gw.openai().chat.completions.create(
        model="gpt-4o-mini",
        messages=PROMPT,
        stream=True,
        extra_headers={
            "x-test": key,
            "x-mock-chunks": "3",
            "Helicone-Fallbacks": json.dumps(
                [
                    target(gw.mock.url, [502], **{"x-mock-status": "502"}),
                    target(gw.mock.url, [502]),
                ]
            ),
        },
    )
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) == 3
    assert len(gw.seen(key)) == 2


def test_anthropic_falls_back_too(gw: AttemptsPipeline) -> None:
    key = tag()
    raw = gw.anthropic().messages.with_raw_response.create(
        model="claude-3-5-haiku-latest",
        max_tokens=50,
        messages=PROMPT,
        extra_headers={
            "x-test": key,
            "Helicone-Fallbacks": json.dumps(
                [
                    target(gw.mock.url, [529], **{"x-mock-status": "529"}),
                    target(gw.mock.url, [529]),
                ]
            ),
        },
    )
    assert raw.http_response.status_code == 200
    assert raw.headers["helicone-fallback-index"] == "1"
    assert raw.parse().content
    assert len(gw.seen(key)) == 2


def test_anthropic_gets_a_502_when_no_target_can_be_reached(gw: AttemptsPipeline) -> None:
    dead = f"http://127.0.0.1:{refused_port()}"
    with pytest.raises(anthropic.APIStatusError) as caught:
        gw.anthropic().messages.create(
            model="claude-3-5-haiku-latest",
            max_tokens=50,
            messages=PROMPT,
            extra_headers={
                "Helicone-Fallbacks": json.dumps([target(dead, [500]), target(dead, [500])])
            },
        )
    assert caught.value.status_code == 502
    assert caught.value.response.headers["llmtap-error"] == "upstream_connect_error"
    # llmtap's own error takes the target's provider's shape, as with Helicone-Target-URL:
    # OpenAI's for a host that is not a known provider
    assert caught.value.response.json()["error"]["code"] == "upstream_connect_error"
    row = gw.row(caught.value.response.headers["helicone-id"])
    assert row.attempts == 2
    assert row.fallback_index == 1


def test_keys_in_a_fallbacks_header_are_never_stored(gw: AttemptsPipeline) -> None:
    """A fallback's headers carry other providers' keys: the stored ``Helicone-Fallbacks`` has
    them redacted (and target URLs with ``?key=``), like any secret header (invariant 5)."""
    canary = "sk-canary-" + tag()
    raw = chat(
        gw,
        tag(),
        [
            target(gw.mock.url, [500], **{"x-mock-status": "500", "x-api-key": canary + "a"}),
            {
                **target(
                    gw.mock.url + f"/?key={canary}q", [500], authorization=f"Bearer {canary}b"
                ),
                "bodyKeyOverride": {"api_key": canary + "c"},
            },
        ],
    )
    assert raw.http_response.status_code in (200, 404)
    row = gw.row(raw.headers["helicone-id"])
    stored = row.request_headers["helicone-fallbacks"]
    assert canary not in stored
    entries = json.loads(stored)
    assert entries[1]["headers"]["authorization"].startswith("<redacted:")
    assert entries[0]["headers"]["x-mock-status"] == "500"  # what is not secret stays readable
    assert canary not in json.dumps(gw.api_get(raw.headers["helicone-id"]))
    assert files_containing(gw.backend.settings.data_dir, canary.encode()) == []
