"""llmtap API keys: how they look and how they are hashed (keys are only ever stored hashed).

``directory.KeyDirectory`` answers which organization a key belongs to, for the proxy, the API
and the consumer alike.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

KEY_PREFIX = "sk-llmtap-"
DEFAULT_ORG_ID = "default"
"""The organization of calls made without an llmtap key (single-tenant installs)."""


@dataclass(frozen=True, slots=True)
class KeyGrant:
    """What an (unrevoked) key is allowed: its organization, and the rate limit it carries."""

    org_id: str
    rate_limit: str | None = None
    """A policy (``<quota>;w=<seconds>…``, checked when the key was created) the proxy applies to
    every call made with the key, whatever headers the call sends."""


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """sha256 hex of the key, after stripping a ``Bearer `` prefix and surrounding space."""
    key = key.strip()
    if key[:7].lower() == "bearer ":
        key = key[7:].strip()
    return hashlib.sha256(key.encode()).hexdigest()
