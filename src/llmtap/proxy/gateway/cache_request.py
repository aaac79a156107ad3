"""What a call's cache headers ask for, read once from ``TapHeaders.features``.

``Helicone-Cache-Enabled: true`` reads and saves; ``-Cache-Read`` / ``-Cache-Save`` set one
direction each (they win over ``Enabled``). A value other than ``true``/``1``/``yes``/``on`` is
off. ``Helicone-Cache-Bucket-Max-Size`` must be a whole number from 1 to 20: anything else is
refused with a 400 (a typo would otherwise silently cache one answer where the caller wanted
twenty). ``Cache-Control: max-age`` / ``s-maxage`` (which wins) set how long an answer saved by
this call lives: 7 days by default, at most 365; a directive that is not a number is ignored.
Only a miss saves, so only a miss reads it (``max_age``): a hit does not scan the headers for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmtap.capture.tap import HeaderList

DEFAULT_MAX_AGE_S = 7 * 24 * 3600
MAX_MAX_AGE_S = 365 * 24 * 3600
MAX_BUCKET_SIZE = 20
_TRUE = frozenset({"true", "1", "yes", "on"})
MEMO_MAX_CHARS = 512


class CacheHeaderError(ValueError):
    """A cache header the call cannot mean: answered 400 in the provider's error shape."""

    retriable = False


@dataclass(slots=True)
class CacheRequest:
    """Made by ``cache_request`` and never changed after: calls that send the same cache headers
    share one (``CacheRequests``). Not ``frozen``: that makes building one several times slower."""

    read: bool
    save: bool
    bucket_size: int = 1
    seed: str = ""
    ignore_keys: tuple[str, ...] = ()
    key_part: bytes = field(init=False, repr=False, compare=False)
    """The ignore list, the seed and the bucket size as ``cache_key`` hashes them."""

    def __post_init__(self) -> None:
        ignored = ",".join(self.ignore_keys).encode("utf-8", "surrogateescape")
        seed = self.seed.encode("utf-8", "surrogateescape")
        bucket = b"%d" % self.bucket_size
        self.key_part = b"%d:%s%d:%s%d:%s" % (
            len(ignored),
            ignored,
            len(seed),
            seed,
            len(bucket),
            bucket,
        )


def _on(value: str | None) -> bool | None:
    return None if value is None else value.strip().lower() in _TRUE


def cache_request(features: dict[str, str]) -> CacheRequest | None:
    """The cache part of a call's feature headers; None when it neither reads nor saves."""
    enabled = _on(features.get("cache-enabled")) or False
    read = _on(features.get("cache-read"))
    save = _on(features.get("cache-save"))
    read = enabled if read is None else read
    save = enabled if save is None else save
    if not (read or save):
        return None
    bucket = 1
    raw_bucket = features.get("cache-bucket-max-size")
    if raw_bucket is not None:
        text = raw_bucket.strip()
        if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_BUCKET_SIZE:
            raise CacheHeaderError(
                f"Helicone-Cache-Bucket-Max-Size must be a whole number from 1 to "
                f"{MAX_BUCKET_SIZE}, got {raw_bucket[:40]!r}"
            )
        bucket = int(text)
    raw_keys = features.get("cache-ignore-keys")
    ignore = (
        tuple(sorted({k.strip() for k in raw_keys.split(",") if k.strip()})) if raw_keys else ()
    )
    return CacheRequest(
        read=read,
        save=save,
        bucket_size=bucket,
        seed=features.get("cache-seed", ""),
        ignore_keys=ignore,
    )


class CacheRequests:
    """``cache_request`` of each set of cache headers, read once: a client sends the same few
    sets over and over, and a hit should not pay for parsing them again. At most ``size`` sets
    are kept (then it starts over), none longer than ``MEMO_MAX_CHARS`` (a long seed or ignore
    list is parsed each time); a refused set is never kept (it raises every time)."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._known: dict[tuple[str | None, ...], CacheRequest | None] = {}

    def get(self, features: dict[str, str]) -> CacheRequest | None:
        get = features.get
        # spelled out: a generator over CACHE_FEATURES costs more than the lookup it saves
        key = (
            get("cache-enabled"),
            get("cache-read"),
            get("cache-save"),
            get("cache-bucket-max-size"),
            get("cache-seed"),
            get("cache-ignore-keys"),
        )
        try:
            return self._known[key]
        except KeyError:
            pass
        asked = cache_request(features)
        if sum(len(part) for part in key if part is not None) <= MEMO_MAX_CHARS:
            if len(self._known) >= self._size:
                self._known.clear()
            self._known[key] = asked
        return asked


def max_age(headers: HeaderList) -> int:
    """Seconds an answer saved by this call lives, from its ``Cache-Control``."""
    found: dict[str, int] = {}
    for name, value in headers:
        # the length first: most calls send no Cache-Control, and most names are not 13 long
        if len(name) != 13 or name.lower() != b"cache-control":
            continue
        for directive in value.decode("latin-1").split(","):
            key, _, number = directive.strip().partition("=")
            key = key.strip().lower()
            number = number.strip().strip('"')
            if key in ("max-age", "s-maxage") and number.isascii() and number.isdigit():
                found[key] = int(number[:12])
    seconds = found.get("s-maxage", found.get("max-age", DEFAULT_MAX_AGE_S))
    return min(seconds, MAX_MAX_AGE_S)
