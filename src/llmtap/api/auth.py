"""Who is calling: an llmtap key (``Authorization: Bearer sk-llmtap-...`` or ``Helicone-Auth``)
resolved to its organization through the key directory.

The directory caches each answer for ``key_cache_ttl_s`` (``llmtap.keys.directory``), so a
dashboard polling the API does not hit the database per call and a revoked key stops working
within that time.
"""

from __future__ import annotations

from llmtap.keys import hash_key
from llmtap.keys.directory import KeyDirectory


class Unauthorized(Exception):
    """No usable key: the API answers 401 with this message."""


class KeyResolver:
    def __init__(self, keys: KeyDirectory) -> None:
        self._keys = keys

    def org_for(self, authorization: str | None, helicone_auth: str | None) -> str:
        """The caller's organization; ``Unauthorized`` when no valid key was sent."""
        raw = authorization or helicone_auth
        if not raw or not raw.strip():
            raise Unauthorized(
                "missing API key: send 'Authorization: Bearer sk-llmtap-...' (or Helicone-Auth)"
            )
        org = self._keys.org_for_key_hash(hash_key(raw))
        if org is None:
            raise Unauthorized("invalid or revoked API key")
        return org

    def org_for_key_hash(self, key_hash: str) -> str | None:
        """The organization of the key with this hash, through the same cache (``None``: no
        organization has it, or it was revoked)."""
        return self._keys.org_for_key_hash(key_hash)
