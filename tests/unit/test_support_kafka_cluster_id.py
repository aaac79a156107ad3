"""The test broker's cluster id never starts with "-" (Kafka's storage tool reads it as an option:
one broker start in 64 failed in CI)."""

from __future__ import annotations

import base64

from support.kafka_broker import cluster_id


def test_a_cluster_id_is_a_kafka_uuid_that_never_starts_with_a_dash() -> None:
    ids = [cluster_id() for _ in range(2000)]  # the old way: ~31 of them started with "-"
    assert not [c for c in ids if c.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(c + "==")) == 16 for c in ids)
    assert len(set(ids)) == len(ids)
