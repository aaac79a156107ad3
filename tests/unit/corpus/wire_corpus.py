"""The wire-format corpus: real provider responses with the usage and cost they must produce.

Each case is ``cases/<name>.json``; a streamed body lives next to it in ``bodies/`` byte for byte
(CRLF, comments and cut-off tails included). A case names the request an SDK would send, the
response the provider gave, how the capture went (``record``: client gone, truncated, model
override), the provider's published prices per million tokens (``prices``) and what llmtap must
record (``expect``). The expected cost is computed from ``prices`` here, with a plain formula,
not by the code under test.

``load_corpus()`` is also what an end-to-end replay (mock upstream + official SDKs) iterates.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

CORPUS_DIR = Path(__file__).parent
# prices change over time; every case is priced as of this instant
CASE_TIMESTAMP_MS = 1_795_176_000_000.0  # 2026-11-20T12:00:00Z
TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "audio_input_tokens",
    "audio_output_tokens",
)


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    endpoint: str
    provider: str
    """``LogRecord.provider``: the proxy's route name, or the target host."""
    target_url: str
    request: dict[str, Any] | None
    status: int
    response_headers: dict[str, str]
    response_body: bytes
    """Exactly what the capture holds (compressed or cut off when the case says so)."""
    expect: dict[str, Any]
    wire_body: bytes = b""
    """What the provider sent: ``response_body`` before a truncated capture cut it short."""
    prices: dict[str, float] = field(default_factory=dict)
    overrides: dict[str, dict[str, float]] = field(default_factory=dict)
    record_error: str | None = None
    truncated: bool = False
    model_override: str | None = None
    timestamp_ms: float = CASE_TIMESTAMP_MS

    @property
    def streamed(self) -> bool:
        return bool(self.request and self.request.get("stream") is True)

    @property
    def requested_model(self) -> str | None:
        model = (self.request or {}).get("model")
        return model if isinstance(model, str) else None

    def expected_cost_nano(self) -> int | None:
        """Nano-dollars from the published prices, or None when the case must stay unpriced."""
        if self.expect["cost_source"] == "unpriced":
            return None
        p = {k: Decimal(str(v)) for k, v in self.prices.items()}
        e = self.expect
        total_in = e["input_tokens"] or 0
        cached = e["cache_read_tokens"] or 0
        written = e["cache_write_tokens"] or 0
        written_1h = e.get("cache_write_1h") or 0
        audio_in = e["audio_input_tokens"] or 0
        audio_out = e["audio_output_tokens"] or 0
        out = e["output_tokens"] or 0
        # a part without its own published price is billed at its parent's price
        usd = (
            p["input"] * (total_in - cached - written - audio_in)
            + p.get("cache_read", p["input"]) * cached
            + p.get("cache_write", p["input"]) * (written - written_1h)
            + p.get("cache_write_1h", p.get("cache_write", p["input"])) * written_1h
            + p.get("audio_input", p["input"]) * audio_in
            + p.get("output", Decimal(0)) * (out - audio_out)
            + p.get("audio_output", p.get("output", Decimal(0))) * audio_out
        ) / Decimal(1_000_000)
        return int((usd * Decimal(1_000_000_000)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _body(spec: dict[str, Any], directory: Path) -> tuple[bytes, bytes]:
    """(what the provider sent, what the capture holds)."""
    body: bytes
    if "response_file" in spec:
        body = (directory / "bodies" / spec["response_file"]).read_bytes()
    else:
        body = json.dumps(spec["response_json"], separators=(",", ":")).encode()
    transform: str = spec.get("transform", "")
    if transform == "gzip":
        body = gzip.compress(body, mtime=0)
    elif transform.startswith("truncate:"):
        return body, body[: int(transform.removeprefix("truncate:"))]
    return body, body


def load_corpus(directory: Path = CORPUS_DIR) -> list[Case]:
    cases = []
    for path in sorted((directory / "cases").glob("*.json")):
        spec = json.loads(path.read_text())
        record = spec.get("record", {})
        wire, captured = _body(spec, directory)
        cases.append(
            Case(
                name=path.stem,
                description=spec["description"],
                endpoint=spec["endpoint"],
                provider=spec["provider"],
                target_url=spec["target_url"],
                request=spec.get("request"),
                status=spec["status"],
                response_headers=spec.get("response_headers", {}),
                response_body=captured,
                expect=spec["expect"],
                wire_body=wire,
                prices=spec.get("prices", {}),
                overrides=spec.get("overrides", {}),
                record_error=record.get("error"),
                truncated=record.get("truncated", False),
                model_override=record.get("model_override"),
            )
        )
    return cases
