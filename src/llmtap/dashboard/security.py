"""Headers every answer carries, and the same-origin check of form posts.

The Content-Security-Policy forbids inline script, remote scripts, styles and images (``img-src
'self' data:``: an image a logged prompt points at is never fetched, only its URL is shown),
framing and form posts elsewhere. It is sent on every answer of the process, API answers
included: it costs a header and protects anything a browser might render.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every HTTP answer (a route may set a stricter CSP)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)


def same_origin(request: Request) -> bool:
    """Whether a state-changing request came from our own pages, as far as the browser says:
    ``Sec-Fetch-Site`` and ``Origin`` must name this site when present. (Browsers send at least
    one of them on every POST; a client that sends neither is not a browser another site can
    drive, and still needs the CSRF token.)"""
    headers: Headers = request.headers
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    host = headers.get("host", "")
    # the host only, not the scheme: behind a TLS-terminating proxy the app sees http
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc == host
