"""How a webhook delivery is signed, so its receiver can tell it came from llmtap, unchanged.

Two headers over the exact bytes sent:

* ``Helicone-Signature: <hex HMAC-SHA256(secret, body)>`` — what Helicone's receivers check;
* ``Llmtap-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`` — the same
  with the send time inside the signed bytes, so a receiver can refuse a replayed old delivery.

The recipe to check them is in docs/integrations.md.
"""

from __future__ import annotations

import hashlib
import hmac


def hmac_hex(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def signature_headers(secret: str, body: bytes, now_s: int) -> dict[str, str]:
    return {
        "Helicone-Signature": hmac_hex(secret, body),
        "Llmtap-Signature": f"t={now_s},v1={hmac_hex(secret, str(now_s).encode() + b'.' + body)}",
    }
