"""Signing in to the dashboard over HTTP, for tests: an ``httpx.Client`` holding the session
cookie, and the CSRF token read from the page as a browser's script would."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@contextmanager
def signed_in(base_url: str, key: str) -> Iterator[httpx.Client]:
    """A client signed in with ``key`` (``AssertionError`` if the key is refused)."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        response = client.post("/login", data={"key": key})
        assert response.status_code == 303, response.text[:500]
        assert "llmtap_session" in client.cookies
        yield client


def with_session(token: str) -> dict[str, str]:
    """Headers that present ``token`` as the session cookie (a replayed or forged one)."""
    return {"Cookie": f"llmtap_session={token}"}


def csrf_of(client: httpx.Client) -> str:
    page = client.get("/requests")
    found = _CSRF.search(page.text)
    assert found is not None, page.text[:500]
    return found.group(1)
