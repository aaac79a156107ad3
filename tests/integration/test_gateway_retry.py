"""``Helicone-Retry-*`` through the real proxy with the official SDKs (their own retries off):
what is retried, how long it waits, that nothing is retried once the client has a byte, and what
the record keeps. The mock upstream fails the first n calls of a key (``x-mock-fail-first``)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import anthropic
import openai
import pytest

from support.attempts_pipeline import AttemptsPipeline, attempts_pipeline, tag

PROMPT: Any = [{"role": "user", "content": "say something"}]
FAST = {"Helicone-Retry-Enabled": "true", "Helicone-Retry-Min-Timeout": "20"}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AttemptsPipeline]:
    with attempts_pipeline(tmp_path_factory.mktemp("retry")) as pipeline:
        yield pipeline


def failing(key: str, first: int, status: int = 503, **more: str) -> dict[str, str]:
    return {
        "x-test": key,
        "x-mock-fail-key": key,
        "x-mock-fail-first": str(first),
        "x-mock-fail-status": str(status),
        **more,
    }


def chat(gw: AttemptsPipeline, headers: dict[str, str], **kwargs: Any) -> Any:
    return gw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=PROMPT, extra_headers=headers, **kwargs
    )


def gaps_ms(attempt_log: list[dict[str, Any]]) -> list[float]:
    """Time between one attempt's answer and the next attempt's start (the waits)."""
    return [
        later["start_ms"] - (earlier["start_ms"] + earlier["duration_ms"])
        for earlier, later in itertools.pairwise(attempt_log)
    ]


def test_a_503_is_retried_with_exponential_backoff_until_it_answers(gw: AttemptsPipeline) -> None:
    key = tag()
    raw = chat(
        gw,
        {
            **failing(key, 2),
            "Helicone-Retry-Enabled": "true",
            "Helicone-Retry-Min-Timeout": "100",
            "Helicone-Retry-Factor": "3",
            "Helicone-Retry-Max-Timeout": "5000",
        },
    )
    assert raw.http_response.status_code == 200
    assert raw.parse().choices[0].message.content
    assert len(gw.seen(key)) == 3

    request_id = raw.headers["helicone-id"]
    row = gw.row(request_id)
    assert row.attempts == 3
    assert row.status == 200
    detail = gw.api_get(request_id)
    log = detail["attempt_log"]
    assert [a["status"] for a in log] == [503, 503, 200]
    assert all(a["target"].endswith("/v1/chat/completions") for a in log)
    assert detail["attempts"] == 3
    assert detail["fallback_index"] is None
    # waits of at least min-timeout, then min-timeout * factor (lower bounds only)
    first, second = gaps_ms(log)
    assert first >= 100 - 1
    assert second >= 300 - 1


def test_max_timeout_caps_the_backoff(gw: AttemptsPipeline) -> None:
    key = tag()
    started = time.monotonic()
    raw = chat(
        gw,
        {
            **failing(key, 2),
            "Helicone-Retry-Enabled": "true",
            "Helicone-Retry-Min-Timeout": "150",
            "Helicone-Retry-Factor": "10",
            "Helicone-Retry-Max-Timeout": "200",
        },
    )
    assert raw.http_response.status_code == 200
    log = gw.api_get(raw.headers["helicone-id"])["attempt_log"]
    first, second = gaps_ms(log)
    assert first >= 150 - 1 and second >= 200 - 1
    assert time.monotonic() - started < 1.5 + 5  # 1.5 s uncapped; the rest is slack for CI


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_each_retryable_status_is_retried(gw: AttemptsPipeline, status: int) -> None:
    key = tag()
    raw = chat(gw, {**failing(key, 1, status), **FAST})
    assert raw.http_response.status_code == 200
    assert len(gw.seen(key)) == 2


@pytest.mark.parametrize("status", [400, 401, 404, 409, 501])
def test_other_statuses_are_answered_at_once(gw: AttemptsPipeline, status: int) -> None:
    key = tag()
    with pytest.raises(openai.APIStatusError) as caught:
        chat(gw, {**failing(key, 1, status), **FAST})
    assert caught.value.status_code == status
    assert len(gw.seen(key)) == 1


def test_without_retry_enabled_nothing_is_retried(gw: AttemptsPipeline) -> None:
    for headers in (
        {"Helicone-Retry-Num": "3"},
        {"Helicone-Retry-Enabled": "false", "Helicone-Retry-Num": "3"},
    ):
        key = tag()
        with pytest.raises(openai.InternalServerError):
            chat(gw, {**failing(key, 1), **headers})
        assert len(gw.seen(key)) == 1


def test_calls_that_did_not_ask_keep_the_plain_record(gw: AttemptsPipeline) -> None:
    for headers in ({"x-test": tag()}, {"x-test": tag(), "Helicone-Retry-Num": "3"}):
        raw = chat(gw, headers)
        detail = gw.api_get(raw.headers["helicone-id"])
        assert detail["attempts"] == 1
        assert detail["attempt_log"] is None
        assert detail["fallback_index"] is None
        assert "helicone-fallback-index" not in raw.headers


def test_retry_num_bounds_the_attempts_and_the_last_answer_is_relayed(
    gw: AttemptsPipeline,
) -> None:
    key = tag()
    with pytest.raises(openai.RateLimitError) as caught:
        chat(gw, {**failing(key, 10, 429), **FAST, "Helicone-Retry-Num": "2"})
    assert len(gw.seen(key)) == 3
    # the provider's own answer, not one of llmtap's
    assert caught.value.response.headers.get("llmtap-error") is None
    assert "Rate limit reached" in caught.value.message
    row = gw.row(caught.value.response.headers["helicone-id"])
    assert row.attempts == 3 and row.status == 429


def test_retry_num_zero_sends_once(gw: AttemptsPipeline) -> None:
    key = tag()
    with pytest.raises(openai.InternalServerError):
        chat(gw, {**failing(key, 1), **FAST, "Helicone-Retry-Num": "0"})
    assert len(gw.seen(key)) == 1


def test_llmtap_spelling_works_too(gw: AttemptsPipeline) -> None:
    key = tag()
    raw = chat(
        gw, {**failing(key, 1), "Llmtap-Retry-Enabled": "true", "Llmtap-Retry-Min-Timeout": "10"}
    )
    assert raw.http_response.status_code == 200
    assert len(gw.seen(key)) == 2


def test_retry_after_in_seconds_is_honoured(gw: AttemptsPipeline) -> None:
    key = tag()
    raw = chat(gw, {**failing(key, 1, 429, **{"x-mock-retry-after": "1"}), **FAST})
    assert raw.http_response.status_code == 200
    [gap] = gaps_ms(gw.api_get(raw.headers["helicone-id"])["attempt_log"])
    assert gap >= 1000 - 1


def test_retry_after_as_an_http_date_is_honoured(gw: AttemptsPipeline) -> None:
    key = tag()
    when = formatdate(time.time() + 3, usegmt=True)  # whole seconds: 2 to 3 s from now
    raw = chat(gw, {**failing(key, 1, 503, **{"x-mock-retry-after": when}), **FAST})
    assert raw.http_response.status_code == 200
    [gap] = gaps_ms(gw.api_get(raw.headers["helicone-id"])["attempt_log"])
    assert gap >= 1000


def test_retry_after_is_capped_by_max_timeout(gw: AttemptsPipeline) -> None:
    key = tag()
    started = time.monotonic()
    raw = chat(
        gw,
        {
            **failing(key, 1, 429, **{"x-mock-retry-after": "3600"}),
            **FAST,
            "Helicone-Retry-Max-Timeout": "300",
        },
    )
    assert raw.http_response.status_code == 200
    assert time.monotonic() - started < 60
    [gap] = gaps_ms(gw.api_get(raw.headers["helicone-id"])["attempt_log"])
    assert gap >= 300 - 1


def test_a_connection_dropped_before_any_answer_is_retried(gw: AttemptsPipeline) -> None:
    key = tag()
    raw = chat(gw, {**failing(key, 2, 0), **FAST})
    assert raw.http_response.status_code == 200
    log = gw.api_get(raw.headers["helicone-id"])["attempt_log"]
    assert [(a["status"], a.get("error")) for a in log] == [
        (0, "upstream_disconnected"),
        (0, "upstream_disconnected"),
        (200, None),
    ]


def test_a_stream_that_fails_before_its_head_is_retried(gw: AttemptsPipeline) -> None:
    key = tag()
    stream = gw.openai().chat.completions.create(
        model="gpt-4o-mini",
        messages=PROMPT,
        stream=True,
        extra_headers={**failing(key, 1, 502), **FAST, "x-mock-chunks": "4"},
    )
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) == 4
    assert len(gw.seen(key)) == 2


def test_a_stream_cut_after_its_head_is_never_retried(gw: AttemptsPipeline) -> None:
    key = tag()
    stream = gw.openai().chat.completions.create(
        model="gpt-4o-mini",
        messages=PROMPT,
        stream=True,
        extra_headers={
            "x-test": key,
            **FAST,
            "x-mock-chunks": "6",
            "x-mock-drop-after-chunks": "2",
        },
    )
    got = []
    with pytest.raises(openai.APIConnectionError):  # the provider cut the body
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                got.append(chunk.choices[0].delta.content)
    assert len(got) == 2  # the two pieces sent before the cut, once: no replay spliced in
    assert len(gw.seen(key)) == 1


def test_anthropic_calls_are_retried_too(gw: AttemptsPipeline) -> None:
    key = tag()
    client = gw.anthropic()
    raw = client.messages.with_raw_response.create(
        model="claude-3-5-haiku-latest",
        max_tokens=50,
        messages=PROMPT,
        extra_headers={**failing(key, 2, 500), **FAST},
    )
    assert raw.http_response.status_code == 200
    assert raw.parse().content
    assert len(gw.seen(key)) == 3
    assert gw.row(raw.headers["helicone-id"]).attempts == 3


def test_anthropic_gets_the_providers_last_error_when_retries_run_out(
    gw: AttemptsPipeline,
) -> None:
    key = tag()
    with pytest.raises(anthropic.InternalServerError) as caught:
        gw.anthropic().messages.create(
            model="claude-3-5-haiku-latest",
            max_tokens=50,
            messages=PROMPT,
            extra_headers={**failing(key, 5, 500), **FAST, "Helicone-Retry-Num": "1"},
        )
    assert caught.value.status_code == 500
    assert len(gw.seen(key)) == 2
