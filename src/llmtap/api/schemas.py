"""The API's JSON shapes as Pydantic models, so the OpenAPI schema describes real fields.

The request model is derived from ``RequestRow`` (one definition of a logged call), plus the
fields the API adds (``created_at``, ``cost_usd``).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, create_model

from llmtap.stores.row import RequestRow

_DETAIL_ONLY = {"request_headers", "response_headers", "attempt_log"}


class AttemptOut(BaseModel):
    """One attempt of a call that asked for retries or fallbacks."""

    target: str = Field(description="the URL it went to (secrets in the query redacted)")
    start_ms: float = Field(description="when it was sent, ms after the call's start")
    duration_ms: float | None = Field(None, description="sent -> answer head or failure")
    status: int = Field(0, description="its answer's status (0: none came)")
    error: str | None = Field(None, description="why it failed before any answer")
    fallback_index: int | None = Field(None, description="its Helicone-Fallbacks target")


def _row_fields(include_detail: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for info in msgspec.structs.fields(RequestRow):
        if info.name in _DETAIL_ONLY and not include_detail:
            continue
        if info.name == "attempt_log":
            fields[info.name] = (
                list[AttemptOut] | None,
                Field(description="each attempt of a call with retries or fallbacks"),
            )
            continue
        fields[info.name] = (info.type, ...)
    fields["created_at"] = (str, Field(description="ISO-8601 UTC time the proxy got the call"))
    fields["cost_usd"] = (
        float | None,
        Field(description="cost_nano_usd / 1e9; null when the model has no known price"),
    )
    fields["scores"] = (
        dict[str, float | bool],
        Field(default_factory=dict, description="scores posted on the call, by name"),
    )
    fields["feedback"] = (
        bool | None,
        Field(None, description="the feedback posted on the call (true: thumbs up)"),
    )
    return fields


RequestOut: type[BaseModel] = create_model("Request", **_row_fields(False))
RequestDetailBase: type[BaseModel] = create_model("RequestDetailBase", **_row_fields(True))


class BodyOut(BaseModel):
    status: Literal["stored", "omitted", "none", "missing", "too_large"]
    reason: str | None = None
    size: int | None = None
    json_: Any = Field(None, alias="json")
    text: str | None = None
    base64: str | None = None
    note: str | None = Field(None, description="why a body that looks like JSON is shown as text")


class RequestDetailOut(RequestDetailBase):  # type: ignore[misc,valid-type]
    bodies: dict[str, BodyOut] | None = Field(
        None, description="request/response bodies when asked for with ?bodies=true"
    )


class SearchPageOut(BaseModel):
    data: list[RequestOut]  # type: ignore[valid-type]
    next_cursor: str | None = Field(description="pass back as `cursor` for the next page")
    scanned: int = Field(description="candidates examined (text filters may drop some)")
    scan_truncated: bool = Field(
        False,
        description=(
            "a text search stopped at its scan budget before the page was full: more matches"
            " may follow, continue with `next_cursor`"
        ),
    )


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filter: dict[str, Any] | None = Field(
        None,
        description=(
            "A leaf {field, op, value} or {and: [...]}/{or: [...]}. Fields: created, model,"
            " provider, status, user_id, session_id, properties.<name>, cost_usd, latency_ms,"
            " ttft_ms, *_tokens, body (text in stored bodies), ... See docs/api.md."
        ),
        examples=[{"and": [{"field": "model", "op": "eq", "value": "gpt-4o"}]}],
    )
    start: float | str | None = Field(None, description="from (inclusive): unix ms or ISO-8601")
    end: float | str | None = Field(None, description="until (exclusive): unix ms or ISO-8601")
    sort: Literal["created", "latency", "cost", "tokens"] = "created"
    order: Literal["desc", "asc"] = "desc"
    limit: int = Field(50, ge=1, le=1000)
    cursor: str | None = None


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "malformed filter or parameter"},
    401: {"model": ErrorOut, "description": "missing, unknown or revoked API key"},
    503: {"model": ErrorOut, "description": "a store is unavailable, or the API is busy"},
}
