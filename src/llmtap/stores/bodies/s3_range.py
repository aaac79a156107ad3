"""RangeReader: a ranged GET of a pack window without botocore's per-call machinery.

``get_object`` costs ~0.9 ms of CPU per call on these machines (an 80 KB pack: parameter
validation, the event hooks, the request and response models, the signer's lookup), of which
sending the request and reading the answer is ~0.4 ms and SigV4 signing ~0.05 ms. The distributed
consumer makes one such GET per pack window (docs/decisions/2026-12-02-s3-body-reads.md). This
reader signs the request with botocore's own SigV4 signer and the client's own credentials (so a
refreshing role is refreshed), and sends it on the client's own HTTP session, so the egress
proxies (``HTTPS_PROXY``, ``NO_PROXY``), the CA bundle (``AWS_CA_BUNDLE``), and the connect and
read timeouts are the client's.

It only ever answers a complete success. Anything else — an error status, a connection refused or
lost, a body shorter than its ``Content-Length`` — is ``None``, and the store asks botocore
again, whose retries, error parsing and translation stay the store's one behaviour for failures
(a missing pack is ``KeyError``, the server away is ``StoreUnavailable``).

Only for a custom endpoint (SeaweedFS, MinIO, …), which the client addresses by path: AWS's own
endpoints address buckets by host name and region, which botocore works out; they keep
``get_object``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import botocore.exceptions as boto_errors
import urllib3.exceptions
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest


class RangeReader:
    def __init__(self, session: Any, credentials: Any, endpoint_url: str, region: str) -> None:
        self._session = session
        self._credentials = credentials
        self._base = endpoint_url.rstrip("/")
        self._region = region

    @classmethod
    def for_client(cls, client: Any, endpoint: str | None) -> RangeReader | None:
        """A reader sharing ``client``'s HTTP session and credentials; None when the client
        addresses buckets by host name (no custom endpoint), signs nothing (anonymous), or its
        botocore keeps these elsewhere."""
        if not endpoint:
            return None
        session = getattr(getattr(client, "_endpoint", None), "http_session", None)
        credentials = getattr(getattr(client, "_request_signer", None), "_credentials", None)
        endpoint_url = getattr(client.meta, "endpoint_url", None)
        if session is None or credentials is None or not endpoint_url:
            return None
        if not callable(getattr(session, "send", None)):
            return None
        return cls(session, credentials, endpoint_url, client.meta.region_name)

    def read(self, bucket: str, key: str, start: int, end: int) -> bytes | None:
        """Bytes ``start`` to ``end`` (inclusive; clipped at the object's end), or None for anything
        but a complete success."""
        url = f"{self._base}/{quote(bucket, safe='')}/{quote(key, safe='/~')}"
        request = AWSRequest(method="GET", url=url, headers={"Range": f"bytes={start}-{end}"})
        try:
            frozen = self._credentials.get_frozen_credentials()
            S3SigV4Auth(frozen, "s3", self._region).add_auth(request)
            # not streamed: the session reads the whole answer, translating a lost connection
            response = self._session.send(request.prepare())
        except (boto_errors.BotoCoreError, urllib3.exceptions.HTTPError, OSError):
            return None
        if response.status_code != 206 and not (response.status_code == 200 and start == 0):
            return None
        data: bytes = response.content
        length = response.headers.get("Content-Length")
        # the session does not enforce the length: a connection cut mid-body reads short
        if length is None or not length.isdigit() or int(length) != len(data):
            return None
        return data
