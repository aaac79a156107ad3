"""``/keys``: the organization's llmtap API keys — list, create (the key shown once), revoke.

* The list shows a key's id, name, first characters, creation time and revocation; never the key
  or its hash.
* ``POST /keys`` (CSRF) creates a key and redirects to ``/keys/new/<ticket>``, which shows it
  once (``key_reveal.py``): a reload finds nothing; every answer is ``Cache-Control: no-store``.
* ``GET /keys/<id>/revoke`` asks for confirmation; ``POST`` to it (CSRF) revokes the key and ends
  every dashboard session signed in with it. Revoking the key of the current session signs this
  browser out, with a message saying so.

Only the session's organization's keys: a key id of another organization is answered like a
missing one (404) and its key keeps working.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from llmtap.dashboard.auth import COOKIE, Signed, Viewer, check_csrf, form_fields, viewer
from llmtap.dashboard.context import dashboard
from llmtap.dashboard.key_reveal import NewKey

router = APIRouter(include_in_schema=False)

MAX_NAME = 200
"""The records store's column width for a key's name."""
NO_STORE = {"Cache-Control": "no-store"}


def _key_name(raw: str) -> str | None:
    name = raw.strip()
    if not name or len(name) > MAX_NAME:
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return None
    return name


def _list_page(
    request: Request,
    signed: Viewer,
    *,
    message: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    ctx = dashboard(request)
    keys = ctx.records.list_keys(signed.org_id)
    return ctx.pages.render(
        request,
        "keys.html",
        {
            "viewer": signed,
            "page": "keys",
            "keys": keys,
            "message": message,
            "error": error,
            "max_name": MAX_NAME,
        },
        status_code=status,
    )


@router.get("/keys")
def keys_page(request: Request, signed: Signed, revoked: str = "") -> Response:
    message = None
    if revoked:
        known = {k.id: k for k in dashboard(request).records.list_keys(signed.org_id)}
        if revoked in known and known[revoked].revoked:
            message = f"Key {known[revoked].name} ({known[revoked].prefix}…) was revoked."
    return _list_page(request, signed, message=message)


@router.post("/keys")
async def create_key(request: Request) -> Response:
    ctx = dashboard(request)
    signed = await run_in_threadpool(viewer, request)
    form = await form_fields(request)
    check_csrf(request, signed, form)
    name = _key_name(form.get("name", ""))
    if name is None:
        error = f"Give the key a name of 1 to {MAX_NAME} characters (no control characters)."
        return await run_in_threadpool(_list_page, request, signed, error=error, status=400)
    key_id, key = await run_in_threadpool(ctx.records.create_key, signed.org_id, name)
    ticket = ctx.key_reveals.hold(signed.session.token_hash, NewKey(key_id, name, key))
    return RedirectResponse(f"/keys/new/{ticket}", status_code=303, headers=NO_STORE)


@router.get("/keys/new/{ticket}")
def new_key_page(ticket: str, request: Request, signed: Signed) -> Response:
    ctx = dashboard(request)
    shown = ctx.key_reveals.take(signed.session.token_hash, ticket[:100])
    return ctx.pages.render(
        request,
        "key_created.html",
        {"viewer": signed, "page": "keys", "new_key": shown},
        status_code=200 if shown else 410,
        headers=NO_STORE,
    )


def _owned(request: Request, signed: Viewer, key_id: str) -> object | None:
    if len(key_id) > 64:
        return None
    keys = dashboard(request).records.list_keys(signed.org_id)
    return next((k for k in keys if k.id == key_id), None)


def _no_such_key(request: Request, signed: Viewer) -> Response:
    return dashboard(request).pages.render(
        request,
        "not_found.html",
        {"viewer": signed, "page": "keys", "what": "No key with this id in your organization."},
        status_code=404,
    )


@router.get("/keys/{key_id}/revoke")
def confirm_revoke(key_id: str, request: Request, signed: Signed) -> Response:
    key = _owned(request, signed, key_id)
    if key is None:
        return _no_such_key(request, signed)
    return dashboard(request).pages.render(
        request, "key_revoke.html", {"viewer": signed, "page": "keys", "key": key}
    )


@router.post("/keys/{key_id}/revoke")
async def revoke_key(key_id: str, request: Request) -> Response:
    ctx = dashboard(request)
    signed = await run_in_threadpool(viewer, request)
    check_csrf(request, signed, await form_fields(request))
    key_hash = None
    if len(key_id) <= 64:
        key_hash = await run_in_threadpool(ctx.records.revoke_org_key, signed.org_id, key_id)
    if key_hash is None:
        return await run_in_threadpool(_no_such_key, request, signed)
    await run_in_threadpool(ctx.records.sessions.delete_for_key, key_hash)
    if key_hash != signed.session.key_hash:
        return RedirectResponse(f"/keys?revoked={key_id}", status_code=303, headers=NO_STORE)
    # this browser's own key: its session was just deleted with the others
    response = ctx.pages.render(
        request,
        "login.html",
        {
            "next": "/",
            "message": "You revoked the key this browser signed in with, so you are signed out."
            " Sign in with another key of your organization.",
        },
        headers=NO_STORE,
    )
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response
