"""``/v1/integrations/posthog``: the organization's PostHog project, for calls that name none.

The project API key is write-only here: answers show only its last four characters. Calls that
send ``Helicone-Posthog-Key`` go to that project instead (docs/integrations.md).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field

from llmtap.api.context import Ctx, Org
from llmtap.api.integration_rules import MAX_POSTHOG_KEY, SettingRefused, checked_posthog
from llmtap.api.schemas import ERROR_RESPONSES
from llmtap.api.webhooks import records_of
from llmtap.delivery.guard import MAX_URL_LENGTH
from llmtap.delivery.kinds import DEFAULT_POSTHOG_HOST
from llmtap.stores.records.integrations import PostHogProject

router = APIRouter(
    prefix="/v1/integrations/posthog", tags=["integrations"], responses=ERROR_RESPONSES
)


class PostHogIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: Annotated[str, Field(min_length=1, max_length=MAX_POSTHOG_KEY)]
    """The project API key (``phc_...``)."""
    host: Annotated[str, Field(min_length=1, max_length=MAX_URL_LENGTH)] = DEFAULT_POSTHOG_HOST
    """Your PostHog: ``https://us.i.posthog.com``, ``https://eu.i.posthog.com`` or your own."""


def project_json(project: PostHogProject) -> dict[str, Any]:
    return {"host": project.host, "api_key_hint": "…" + project.api_key[-4:]}


@router.put("", summary="Export every call of the organization to this PostHog project")
def set_posthog(body: PostHogIn, org: Org, ctx: Ctx) -> dict[str, Any]:
    store = records_of(ctx)
    try:
        project = checked_posthog(body.host, body.api_key, allow_private=ctx.outbox_allow_private)
    except SettingRefused as exc:
        raise HTTPException(400, str(exc)) from None
    store.integrations.set_posthog(org, project.host, project.api_key)
    return project_json(project)


@router.get("", summary="The organization's PostHog project (the key's last characters only)")
def get_posthog(org: Org, ctx: Ctx) -> dict[str, Any]:
    project = records_of(ctx).integrations.posthog(org)
    if project is None:
        raise HTTPException(404, "no PostHog project configured")
    return project_json(project)


@router.delete("", status_code=204, summary="Stop exporting to the organization's project")
def delete_posthog(org: Org, ctx: Ctx) -> Response:
    if not records_of(ctx).integrations.delete_posthog(org):
        raise HTTPException(404, "no PostHog project configured")
    return Response(status_code=204)
