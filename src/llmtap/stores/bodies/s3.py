"""S3BodyStore: bodies as objects in an S3-compatible bucket (``s3://bucket[/prefix]?endpoint=...``).

Credentials come from the standard AWS chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
profiles, instance roles); the URL only names where. The bucket is created if missing. botocore
errors are translated here: the server unreachable or overloaded is ``StoreUnavailable``, a
missing object is ``KeyError``, anything else is a ``StoreError``.
"""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.exceptions as boto_errors
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from llmtap.errors import ConfigError, StoreError, StoreUnavailable
from llmtap.stores.bodies.port import split_key
from llmtap.stores.bodies.s3_range import RangeReader

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Below this a single PUT is cheapest; above it the managed transfer uploads parts in parallel
# and retries a failed part instead of the whole body.
MULTIPART_THRESHOLD = 8 * 1024 * 1024

_UNAVAILABLE_CODES = {
    "500",
    "502",
    "503",
    "504",
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


WINDOW_BYTES = 1024 * 1024
WINDOW_CACHE_BYTES = 32 * 1024 * 1024


class S3BodyStore:
    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint: str | None = None,
        region: str | None = None,
        create_bucket: bool = True,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        self.region = region or "us-east-1"
        config = Config(
            region_name=self.region,
            connect_timeout=5,
            read_timeout=60,
            # the consumer retries whole batches itself; keep botocore's own retries short
            retries={"max_attempts": 3, "mode": "standard"},
            # custom endpoints (SeaweedFS, MinIO) are addressed by path, not by DNS name
            s3={"addressing_style": "path"} if endpoint else None,
        )
        self._client: S3Client = boto3.client("s3", endpoint_url=endpoint, config=config)
        self._transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD
        )
        if create_bucket:
            self._ensure_bucket()
        # Windows of packs recently read: consecutive records' bodies are neighbours in a pack, so
        # one ranged GET of the next WINDOW bytes serves many slices (a GET per body was most of
        # the distributed consumer's time). Packs are never rewritten, so a window cannot go stale.
        self._windows: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._window_bytes = 0
        self._windows_lock = threading.Lock()
        self.window_reads = 0
        """Pack windows fetched (cache misses), for the benchmarks' GETs per pack."""
        self._ranged = RangeReader.for_client(self._client, endpoint)

    @classmethod
    def from_url(cls, url: str, *, create_bucket: bool = True) -> S3BodyStore:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ConfigError(f"body store URL {url!r}: expected s3://bucket[/prefix]?endpoint=...")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"endpoint", "region"}
        if unknown:
            raise ConfigError(f"body store URL {url!r}: unknown options {sorted(unknown)}")
        return cls(
            parts.netloc,
            prefix=parts.path,
            endpoint=query.get("endpoint"),
            region=query.get("region"),
            create_bucket=create_bucket,
        )

    def _ensure_bucket(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except boto_errors.ClientError as err:
            if _code(err) not in ("404", "NoSuchBucket", "NotFound"):
                raise _translate(err, f"check bucket {self.bucket!r}") from err
        except boto_errors.BotoCoreError as err:
            raise _translate(err, f"check bucket {self.bucket!r}") from err
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self._client.create_bucket(**kwargs)
        except boto_errors.ClientError as err:
            # another process created it in between
            if _code(err) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise _translate(err, f"create bucket {self.bucket!r}") from err
        except boto_errors.BotoCoreError as err:
            raise _translate(err, f"create bucket {self.bucket!r}") from err

    def _object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        name = self._object_key(key)
        try:
            if len(data) < MULTIPART_THRESHOLD:
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=name,
                    Body=data,
                    ContentType=content_type or "application/octet-stream",
                )
            else:
                self._client.upload_fileobj(
                    io.BytesIO(data),
                    self.bucket,
                    name,
                    ExtraArgs={"ContentType": content_type or "application/octet-stream"},
                    Config=self._transfer,
                )
        except (boto_errors.ClientError, boto_errors.BotoCoreError) as err:
            raise _translate(err, f"write {key!r}") from err
        except S3UploadFailedError as err:
            # the managed transfer gave up on a part; writing a body again is harmless
            raise StoreUnavailable(f"body store: cannot write {key!r}: {err}") from err

    def get(self, key: str) -> bytes:
        name, offset, length = split_key(key)
        if offset is not None and length:
            return self._slice(key, name, offset, length)
        stream = self.open_stream(key)
        try:
            return stream.read()
        finally:
            stream.close()

    def _slice(self, key: str, name: str, offset: int, length: int) -> bytes:
        # Windows start at multiples of WINDOW_BYTES, so every reader of a pack finds the same
        # one: a pack's records are spread over the topic's partitions, and a batch brings each
        # partition's share in turn, so a window starting at the first slice asked for was missed
        # (and replaced) by the partitions whose records in the pack come before it.
        start = offset - offset % WINDOW_BYTES
        with self._windows_lock:
            data = self._windows.get((name, start))
            if data is not None and offset + length <= start + len(data):
                self._windows.move_to_end((name, start))
                return data[offset - start : offset - start + length]
        end = max(start + WINDOW_BYTES, offset + length) - 1  # S3 clips a range past the end
        data = self._read_window(key, name, start, end)
        if len(data) < offset - start + length:
            raise StoreError(f"body store: pack {name!r} is shorter than slice {key!r}")
        with self._windows_lock:
            self.window_reads += 1
            previous = self._windows.pop((name, start), None)
            if previous is not None:
                self._window_bytes -= len(previous)
            self._windows[(name, start)] = data
            self._window_bytes += len(data)
            while self._window_bytes > WINDOW_CACHE_BYTES and len(self._windows) > 1:
                self._window_bytes -= len(self._windows.popitem(last=False)[1])
        return data[offset - start : offset - start + length]

    def _read_window(self, key: str, name: str, start: int, end: int) -> bytes:
        if self._ranged is not None:
            data = self._ranged.read(self.bucket, self._object_key(name), start, end)
            if data is not None:
                return data
        # no lean reader, or it did not get a complete answer: botocore's retries and errors
        try:
            response = self._client.get_object(
                Bucket=self.bucket, Key=self._object_key(name), Range=f"bytes={start}-{end}"
            )
            return S3Stream(response["Body"], key).read()
        except boto_errors.ClientError as err:
            if _code(err) in _MISSING_CODES or _code(err) == "InvalidRange":
                raise KeyError(key) from None
            raise _translate(err, f"read {key!r}") from err
        except boto_errors.BotoCoreError as err:
            raise _translate(err, f"read {key!r}") from err

    def open_stream(self, key: str) -> S3Stream:
        """The body as a stream to read in chunks (the caller closes it); ``KeyError`` if none."""
        name, offset, length = split_key(key)
        if length == 0:
            return S3Stream(io.BytesIO(b""), key)
        try:
            if offset is not None and length is not None:
                response = self._client.get_object(
                    Bucket=self.bucket,
                    Key=self._object_key(name),
                    Range=f"bytes={offset}-{offset + length - 1}",
                )
            else:
                response = self._client.get_object(Bucket=self.bucket, Key=self._object_key(name))
        except boto_errors.ClientError as err:
            if _code(err) in _MISSING_CODES:
                raise KeyError(key) from None
            raise _translate(err, f"read {key!r}") from err
        except boto_errors.BotoCoreError as err:
            raise _translate(err, f"read {key!r}") from err
        return S3Stream(response["Body"], key)

    def close(self) -> None:
        self._client.close()


class S3Stream:
    """An object's body being read; a connection lost mid-read is ``StoreUnavailable``."""

    def __init__(self, body: Any, key: str) -> None:
        self._body = body
        self._key = key

    def read(self, size: int = -1, /) -> bytes:
        try:
            data: bytes = self._body.read(None if size < 0 else size)
        except boto_errors.BotoCoreError as err:
            raise _translate(err, f"read {self._key!r}") from err
        return data

    def close(self) -> None:
        self._body.close()


def _code(err: boto_errors.ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _translate(err: Exception, what: str) -> StoreError:
    message = f"body store: cannot {what}: {err}"
    if isinstance(err, boto_errors.ClientError):
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if _code(err) in _UNAVAILABLE_CODES or status >= 500:
            return StoreUnavailable(message)
        return StoreError(message)
    if isinstance(
        err,
        boto_errors.ConnectionError | boto_errors.HTTPClientError | boto_errors.IncompleteReadError,
    ):
        return StoreUnavailable(message)
    return StoreError(message)
