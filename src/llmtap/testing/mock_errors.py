"""Error replies in each provider's JSON shape."""

from __future__ import annotations

from llmtap.testing.mock_http import Reply, encode

# status -> (type, code, message), after OpenAI's documented error codes
_OPENAI: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request (x-mock-status)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: (
        "request_forbidden",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported.",
    ),
    404: ("invalid_request_error", None, "The requested resource does not exist."),
    409: ("invalid_request_error", None, "Conflict."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again in 20ms.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: (
        "server_error",
        None,
        "The engine is currently overloaded, please try again later.",
    ),
}

# status -> type, after Anthropic's documented error types
_ANTHROPIC: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def openai_error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> Reply:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return Reply(status=status, body=encode(body))


def anthropic_error(status: int, message: str, *, type_: str | None = None) -> Reply:
    if type_ is None:
        type_ = _ANTHROPIC.get(status, "api_error" if status >= 500 else "invalid_request_error")
    body = {"type": "error", "error": {"type": type_, "message": message}}
    return Reply(status=status, body=encode(body))


def openai_status(status: int) -> Reply:
    """The error OpenAI would send with ``status`` (for ``x-mock-status``)."""
    known = _OPENAI.get(status)
    if known is None:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        known = (kind, None, f"Mock error {status} (x-mock-status).")
    type_, code, message = known
    return openai_error(status, message, type_=type_, code=code)


def anthropic_status(status: int) -> Reply:
    """The error Anthropic would send with ``status`` (for ``x-mock-status``)."""
    return anthropic_error(status, f"Mock error {status} (x-mock-status).")
