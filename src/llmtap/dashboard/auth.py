"""Signing in to the dashboard with an llmtap key, the session cookie, and CSRF.

* ``POST /login`` with ``key``: the key is resolved through the API's key directory; a session
  row is written to the records store (``stores/records/sessions.py``) and the browser gets its
  random token in an HttpOnly, SameSite=Strict cookie (``Secure`` over https). Failed attempts
  are counted per client address (``login_limit.py``).
* Every page takes a ``Viewer`` (the ``viewer`` dependency): the cookie's session, whose key is
  re-resolved through the key directory on every request, so a revoked key ends its sessions
  within ``key_cache_ttl_s``. The organization comes from the session, never from the URL.
* Every POST checks the session's CSRF token (form field ``csrf`` or header ``X-CSRF-Token``)
  and that the browser says the request came from this site (``security.same_origin``).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from llmtap.dashboard.context import DashboardContext, dashboard
from llmtap.dashboard.security import same_origin
from llmtap.keys import hash_key
from llmtap.stores.records.sessions import DashboardSession

COOKIE = "llmtap_session"
WRONG_KEY = "That key is not valid (or was revoked)."
_MAX_NEXT = 2000

router = APIRouter(include_in_schema=False)


class SignInNeeded(Exception):
    """No live session: pages redirect to the sign-in page."""


class CsrfRefused(Exception):
    """A POST without the session's CSRF token, or from another site: 403."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: the organization every query of the page is scoped to."""

    org_id: str
    org_name: str
    csrf_token: str
    session: DashboardSession


def viewer(request: Request) -> Viewer:
    ctx = dashboard(request)
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 128:
        raise SignInNeeded
    session = ctx.records.sessions.get(token)
    if session is None:
        raise SignInNeeded
    if ctx.api.keys.org_for_key_hash(session.key_hash) != session.org_id:
        ctx.records.sessions.delete(token)  # the key was revoked: this session is over
        raise SignInNeeded
    name = ctx.records.org_name(session.org_id) or session.org_id
    return Viewer(session.org_id, name, session.csrf_token, session)


Signed = Annotated[Viewer, Depends(viewer)]


def local_path(raw: str | None) -> str:
    """``raw`` if it is a path on this site, else ``/``: never ``//host``, a scheme, or a
    backslash (browsers read ``/\\host`` as ``//host``)."""
    if not raw or len(raw) > _MAX_NEXT or not raw.startswith("/") or raw.startswith("//"):
        return "/"
    if "\\" in raw or any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        return "/"
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc:
        return "/"
    return raw


def sign_in_url(request: Request) -> str:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login" if here == "/" else f"/login?next={quote(local_path(here), safe='')}"


def sign_in_needed_response(request: Request) -> Response:
    target = sign_in_url(request)
    if request.headers.get("hx-request"):
        # an htmx partial: have the page itself go to the sign-in page
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})


async def form_fields(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (the first value of each); the guard already capped the
    body at ``max_query_body_bytes``."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    body = (await request.body()).decode("utf-8", "replace")
    try:
        fields = parse_qs(body, max_num_fields=50)
    except ValueError:  # over 50 fields: no form of ours; as if empty (so no CSRF token: 403)
        return {}
    return {name: values[0] for name, values in fields.items()}


def check_csrf(request: Request, signed: Viewer, form: dict[str, str]) -> None:
    sent = form.get("csrf") or request.headers.get("x-csrf-token") or ""
    if not hmac.compare_digest(sent.encode(), signed.csrf_token.encode()):
        raise CsrfRefused
    if not same_origin(request):
        raise CsrfRefused


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _login_page(
    ctx: DashboardContext, request: Request, next_path: str, message: str | None, status: int
) -> Response:
    return ctx.pages.render(
        request,
        "login.html",
        {"next": next_path, "message": message},
        status_code=status,
    )


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    return _login_page(dashboard(request), request, local_path(next), None, 200)


@router.post("/login")
async def login(request: Request) -> Response:
    ctx = dashboard(request)
    form = await form_fields(request)
    next_path = local_path(form.get("next"))
    if not same_origin(request):
        return _login_page(ctx, request, next_path, "Sign in from this site's own page.", 403)
    address = _client_address(request)
    wait_s = ctx.login_limiter.retry_after_s(address)
    if wait_s is not None:
        message = f"Too many failed sign-ins from your address: try again in {wait_s} s."
        response = _login_page(ctx, request, next_path, message, 429)
        response.headers["Retry-After"] = str(wait_s)
        return response
    key = form.get("key", "").strip()
    key_hash = hash_key(key) if key else ""
    org = await run_in_threadpool(ctx.api.keys.org_for_key_hash, key_hash) if key else None
    if org is None:
        ctx.login_limiter.failed(address)
        return _login_page(ctx, request, next_path, WRONG_KEY, 401)
    token, _ = await run_in_threadpool(
        ctx.records.sessions.create, key_hash, org, ctx.session_ttl_s
    )
    response = RedirectResponse(next_path, status_code=303, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(ctx.session_ttl_s),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    ctx = dashboard(request)
    signed = await run_in_threadpool(viewer, request)
    check_csrf(request, signed, await form_fields(request))
    token = request.cookies.get(COOKIE, "")
    await run_in_threadpool(ctx.records.sessions.delete, token)
    response = RedirectResponse("/login", status_code=303, headers={"Cache-Control": "no-store"})
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response
