"""The synthetic call generator shared by ``llmtap seed`` and ``serve --demo``."""

from __future__ import annotations

import json

from llmtap.demo.synthetic import MODELS, PROPERTIES, Synthetic, response_body


def _calls(seed: int, n: int) -> list:
    synthetic = Synthetic(seed, users=500)
    out: list = []
    while len(out) < n:
        out.extend(synthetic.conversation())
    return out


def test_the_same_seed_gives_the_same_calls_and_another_seed_others() -> None:
    first = [(c.user_id, c.session_path, c.latency_ms, c.prompt) for c in _calls(7, 300)]
    again = [(c.user_id, c.session_path, c.latency_ms, c.prompt) for c in _calls(7, 300)]
    other = [(c.user_id, c.session_path, c.latency_ms, c.prompt) for c in _calls(8, 300)]
    assert first == again
    assert first != other


def test_calls_cover_models_properties_streams_and_a_few_errors() -> None:
    calls = _calls(42, 20_000)
    assert {c.model.name for c in calls} == {m.name for m in MODELS}
    assert all(set(c.properties) == set(PROPERTIES) for c in calls)
    errors = sum(c.status != 200 for c in calls) / len(calls)
    assert 0.02 < errors < 0.04
    assert {c.status for c in calls} == {200, 429, 500}
    assert 0.1 < sum(c.stream for c in calls) / len(calls) < 0.6
    assert all(0 < c.ttft_ms <= c.latency_ms for c in calls)
    assert all(c.cache_read_tokens <= c.input_tokens for c in calls)
    assert len({c.user_id for c in calls}) > 300


def test_session_paths_form_trees_whose_parents_come_first() -> None:
    by_session: dict[str, list] = {}
    for call in _calls(3, 5000):
        if call.session_id is not None:
            by_session.setdefault(call.session_id, []).append(call)
    assert len(by_session) > 100
    for calls in by_session.values():
        seen: set[str] = set()
        offsets = [c.offset_ms for c in calls]
        assert offsets == sorted(offsets)
        assert len({c.user_id for c in calls}) == 1
        for call in calls:
            parent = call.session_path.rpartition("/")[0]
            assert parent == "" or parent in seen, (parent, seen)
            seen.add(call.session_path)
            assert call.headers()["Helicone-Session-Path"] == call.session_path


def test_bodies_are_the_providers_wire_formats() -> None:
    for call in _calls(5, 400):
        request = call.request_json()
        assert request["model"] == call.model.name
        body = response_body(call, "abc", 1_700_000_000)
        if call.stream and call.status == 200:
            assert body.startswith((b"data: ", b"event: "))
        else:
            doc = json.loads(body)
            assert ("error" in doc) == (call.status != 200)
