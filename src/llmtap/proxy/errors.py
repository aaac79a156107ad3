"""Error responses llmtap itself gives, in the shape the caller's SDK expects.

When llmtap cannot reach the provider (or refuses a call), the client gets the provider's own
error shape so ``openai``/``anthropic`` SDKs raise their usual typed errors.
"""

from __future__ import annotations

import msgspec

_REASONS = {
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    408: b"Request Timeout",
    413: b"Payload Too Large",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    403: "permission_error",
    404: "not_found_error",
    408: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    431: "request_too_large",
    502: "api_error",
    504: "api_error",
}


def provider_for_path(url: bytes) -> str:
    """The error shape for a request refused before routing: Anthropic's for its paths."""
    return "anthropic" if url.startswith(b"/anthropic/") or b"/v1/messages" in url else "openai"


def reason(status: int) -> bytes:
    return _REASONS.get(status, b"Error")


def error_body(provider: str, status: int, code: str, message: str) -> bytes:
    """A JSON error body shaped like ``provider``'s (OpenAI's for every OpenAI-compatible one)."""
    if provider == "anthropic":
        return msgspec.json.encode(
            {
                "type": "error",
                "error": {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": message},
            }
        )
    return msgspec.json.encode(
        {"error": {"message": message, "type": "llmtap_error", "param": None, "code": code}}
    )


def error_response(
    provider: str,
    status: int,
    code: str,
    message: str,
    request_id: str,
    close: bool,
    extra_head: bytes = b"",
) -> tuple[bytes, bytes]:
    """(whole HTTP/1.1 response bytes, body) for an error llmtap answers itself; ``extra_head``
    holds more header lines (``name: value\r\n`` each), e.g. a rate limit's."""
    body = error_body(provider, status, code, message)
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"helicone-id: %s\r\nllmtap-id: %s\r\nllmtap-error: %s\r\n%s%s\r\n"
        % (
            status,
            reason(status),
            len(body),
            request_id.encode(),
            request_id.encode(),
            code.encode(),
            extra_head,
            b"connection: close\r\n" if close else b"",
        )
    )
    return head + body, body
