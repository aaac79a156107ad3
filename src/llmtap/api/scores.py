"""Scores and feedback on a logged call, Helicone's paths and shapes:

* ``POST /v1/request/{id}/feedback`` ``{"rating": true|false}``
* ``POST /v1/request/{id}/score`` ``{"scores": {"<name>": number|true|false, ...}}``

Both answer ``{"data": null, "error": null, "pending": <bool>}``. ``pending`` is true when no
call with this id is logged in the caller's organization (yet): the score is kept and joins the
call when it lands. A call of another organization gets exactly that answer too, so an id
edited by hand never tells whether it exists elsewhere, and the score never reaches that call
(scores are keyed by organization). Posting a name again replaces its value (last write wins).
Feedback is the score ``helicone-score-feedback`` (1 or 0), as Helicone keeps it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat

from llmtap.api.context import Ctx, Org
from llmtap.api.schemas import ERROR_RESPONSES
from llmtap.stores.fields import BY_NAME
from llmtap.stores.filter import FilterError
from llmtap.stores.records.scores import PendingCapReached, ScoreTable
from llmtap.stores.scores import FEEDBACK, Score, ScoreError, score_of

router = APIRouter(prefix="/v1/request", tags=["scores"], responses=ERROR_RESPONSES)

REQUEST_ID_MAX_CHARS = BY_NAME["request_id"].length or 128


class ScoreBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scores: dict[str, StrictBool | StrictFloat] = Field(
        description=(
            "score name -> number or true/false (kept as 1/0, read back as a boolean). Names:"
            " letters, digits, `_ . : -`, at most 128 characters."
        ),
        examples=[{"accuracy": 0.92, "helpful": True}],
    )


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: StrictBool = Field(description="true: thumbs up; false: thumbs down")


class ScoreOut(BaseModel):
    data: None = None
    error: None = None
    pending: bool = Field(
        description=(
            "no call with this id is logged in your organization yet: the score is kept and"
            " joins the call when it lands"
        )
    )


def _table(ctx: Ctx) -> ScoreTable:
    if ctx.records is None:
        raise HTTPException(404, "scores need the records store")
    return ctx.records.scores


def _store(ctx: Ctx, org: str, request_id: str, given: list[Score]) -> Any:
    if len(request_id) > REQUEST_ID_MAX_CHARS or "\x00" in request_id:
        # no call can have such an id: the same answer as any other unknown id's would be wrong
        # (it cannot be kept), so it is the search's 404
        raise HTTPException(404, "no logged call with this id")
    most = ctx.score_limits.max_pending
    try:
        pending = _table(ctx).put(org, request_id, given, max_pending=most)
    except PendingCapReached:
        raise HTTPException(
            429,
            f"this organization already holds {most} scores for calls"
            " that are not logged yet (scores_max_pending); post scores once calls are logged",
        ) from None
    return {"data": None, "error": None, "pending": pending}


@router.post(
    "/{request_id}/score",
    response_model=ScoreOut,
    summary="Score a logged call (Helicone-compatible)",
    responses={429: {"description": "too many scores waiting for calls not logged yet"}},
)
def post_scores(
    request_id: Annotated[str, Path(description="the call's request id")],
    body: ScoreBody,
    org: Org,
    ctx: Ctx,
) -> Any:
    most = ctx.score_limits.max_per_call
    if not body.scores:
        raise FilterError("scores: give at least one score")
    if len(body.scores) > most:
        raise FilterError(f"scores: at most {most} in one call (scores_max_per_call)")
    try:
        given = [score_of(name, value) for name, value in body.scores.items()]
    except ScoreError as exc:
        raise FilterError(str(exc)) from None
    return _store(ctx, org, request_id, given)


@router.post(
    "/{request_id}/feedback",
    response_model=ScoreOut,
    summary="Thumbs up or down on a logged call (Helicone-compatible)",
    responses={429: {"description": "too many scores waiting for calls not logged yet"}},
)
def post_feedback(
    request_id: Annotated[str, Path(description="the call's request id")],
    body: FeedbackBody,
    org: Org,
    ctx: Ctx,
) -> Any:
    return _store(ctx, org, request_id, [score_of(FEEDBACK, body.rating)])


def scores_json(given: list[Score]) -> tuple[dict[str, float | bool], bool | None]:
    """A call's scores as the API shows them (name -> value, booleans as booleans) and its
    feedback (``None``: none given); feedback is also among the scores, under its own name."""
    shown = {score.name: score.shown for score in given}
    feedback = next((bool(s.value) for s in given if s.name == FEEDBACK), None)
    return shown, feedback
