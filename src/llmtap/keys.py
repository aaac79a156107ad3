"""llmtap API keys: how they look and how they are hashed (keys are only ever stored hashed)."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "sk-llmtap-"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """sha256 hex of the key, after stripping a ``Bearer `` prefix and surrounding space."""
    key = key.strip()
    if key[:7].lower() == "bearer ":
        key = key[7:].strip()
    return hashlib.sha256(key.encode()).hexdigest()
