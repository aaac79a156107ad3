"""The backend process of ``llmtap serve``: the consumer (and the API, which shares its stores).

chDB allows one process per data path, so everything that opens the embedded analytics store
lives here.
"""

from __future__ import annotations

from llmtap.settings import Settings


def run_backend(settings: Settings) -> int:
    from llmtap.consumer.service import run_consumer_until_signalled

    return run_consumer_until_signalled(settings)
