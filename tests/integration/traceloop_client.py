"""An application instrumented with traceloop-sdk, configured as docs/ingestion.md says, calling
the mock upstream directly with the official SDKs. Run as its own process by
``test_ingest_e2e.py`` (traceloop instruments the SDKs process-wide, which must not leak into the
test process). Prints, as one JSON line, what the SDKs returned.

    python traceloop_client.py <llmtap api url> <llmtap key> <mock upstream url> <run id>
"""

from __future__ import annotations

import json
import sys

import anthropic
import openai
from traceloop.sdk import Traceloop
from traceloop.sdk.decorators import workflow


def main(api_url: str, key: str, mock_url: str, run_id: str) -> None:
    Traceloop.init(
        app_name="ingest-e2e",
        api_endpoint=api_url,
        api_key=key,
        disable_batch=True,
        telemetry_enabled=False,
    )
    Traceloop.set_association_properties({"user_id": "alice", "run": run_id})
    oai = openai.OpenAI(base_url=mock_url + "/v1", api_key="sk-provider-openai", max_retries=0)
    ant = anthropic.Anthropic(base_url=mock_url, api_key="sk-provider-anthropic", max_retries=0)
    seen: dict[str, dict[str, object]] = {}

    @workflow(name="answer")
    def answer() -> None:
        chat = oai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "tell me about llamas"}]
        )
        assert chat.usage is not None
        seen["chat"] = {
            "model": chat.model,
            "input": chat.usage.prompt_tokens,
            "output": chat.usage.completion_tokens,
        }
        stream = oai.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "and alpacas?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in stream:
            if chunk.usage is not None:
                seen["stream"] = {
                    "model": chunk.model,
                    "input": chunk.usage.prompt_tokens,
                    "output": chunk.usage.completion_tokens,
                }
        message = ant.messages.create(
            model="claude-3-5-haiku-20241022",
            max_tokens=64,
            messages=[{"role": "user", "content": "and vicuñas?"}],
        )
        seen["anthropic"] = {
            "model": message.model,
            "input": message.usage.input_tokens,
            "output": message.usage.output_tokens,
        }

    answer()
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
