"""llmtap API keys: how they look and how they are hashed (keys are only ever stored hashed).

``directory.KeyDirectory`` answers which organization a key belongs to, for the proxy, the API
and the consumer alike.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "sk-llmtap-"
DEFAULT_ORG_ID = "default"
"""The organization of calls made without an llmtap key (single-tenant installs)."""


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """sha256 hex of the key, after stripping a ``Bearer `` prefix and surrounding space."""
    key = key.strip()
    if key[:7].lower() == "bearer ":
        key = key[7:].strip()
    return hashlib.sha256(key.encode()).hexdigest()
