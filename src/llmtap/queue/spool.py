"""A bounded local write-ahead spool for records the queue could not take.

When ``publish`` raises (queue unreachable, broker buffer full, disk trouble) or Kafka reports a
failed delivery, the proxy appends the record here and replays it once the queue is back.

On disk: ``<base>/slot-<n>/`` holds numbered segment files of records framed as::

    u32 payload length | u32 crc32(payload) | payload = u16 topic length, i32 key length
                                                        (-1 = no key), topic, key, value

Appends go straight to the file (``os.write``, then ``fsync`` when ``fsync=True``), so a process
crash loses nothing that ``append`` accepted; a record torn by a crash fails its length or CRC
check and is cut off, with everything before it kept, when the slot is opened again.

Each slot is locked (``flock``) by the one process using it: several proxy processes sharing
``spool_dir`` each claim a free slot (``Spool.claim``), and ``replay`` also drains slots whose
owner has died. A ``Spool`` object is **not thread-safe**: it belongs to one thread (the proxy's
shipper), which appends and replays.

Bounded by ``max_bytes`` per slot: when full, or when the disk refuses the write (``ENOSPC``), a
new record is dropped and counted in ``dropped`` with a warning in the log saying which (at most
one line per ``log_every_s``, however many batches fail meanwhile) — never silently.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from llmtap.errors import QueueError
from llmtap.private_files import FILE_MODE, private_root
from llmtap.queue.port import Producer

log = logging.getLogger(__name__)

_FRAME = struct.Struct(">II")
_HEAD = struct.Struct(">Hi")
_SUFFIX = ".seg"

Record = tuple[str, bytes | None, bytes]


def encode_record(topic: str, key: bytes | None, value: bytes) -> bytes:
    name = topic.encode()
    payload = b"".join(
        (_HEAD.pack(len(name), -1 if key is None else len(key)), name, key or b"", value)
    )
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def decode_records(data: bytes) -> tuple[list[Record], int]:
    """The intact records at the start of ``data`` and how many bytes they span."""
    records: list[Record] = []
    pos = 0
    while pos + _FRAME.size <= len(data):
        length, crc = _FRAME.unpack_from(data, pos)
        start, end = pos + _FRAME.size, pos + _FRAME.size + length
        if end > len(data) or length < _HEAD.size:
            break
        payload = data[start:end]
        if zlib.crc32(payload) != crc:
            break
        topic_len, key_len = _HEAD.unpack_from(payload)
        body = _HEAD.size + topic_len
        topic = payload[_HEAD.size : body].decode()
        key = None if key_len < 0 else payload[body : body + key_len]
        records.append((topic, key, payload[body + max(key_len, 0) :]))
        pos = end
    return records, pos


class Spool:
    """One process's spool slot (see the module docstring for layout and guarantees)."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        *,
        segment_bytes: int = 8 * 1024 * 1024,
        fsync: bool = True,
        log_every_s: float = 10.0,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self._log_every_s = log_every_s
        self.dropped = 0
        """Records refused because the spool was full or the disk failed (since start)."""
        self._last_drop_log = -float("inf")
        self._write_error: str | None = None
        """Why the last write failed; None once one succeeds."""
        self._active: int | None = None
        self._active_path = directory
        self._active_size = 0
        private_root(directory)
        self._lock_fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise QueueError(f"spool {directory} is in use by another process") from None
        self._sizes: dict[Path, int] = {}
        self.pending = 0
        """Records on disk waiting for replay."""
        for segment in self._segments():
            self._recover(segment)

    @classmethod
    def claim(
        cls,
        base: Path,
        max_bytes: int,
        slots: int = 64,
        *,
        segment_bytes: int = 8 * 1024 * 1024,
        fsync: bool = True,
    ) -> Spool:
        """Open the first slot under ``base`` that no live process holds."""
        for n in range(slots):
            try:
                return cls(base / f"slot-{n}", max_bytes, segment_bytes=segment_bytes, fsync=fsync)
            except QueueError:
                continue
        raise QueueError(f"all {slots} spool slots under {base} are in use")

    @property
    def size_bytes(self) -> int:
        return sum(self._sizes.values())

    def append(self, topic: str, key: bytes | None, value: bytes) -> bool:
        """Keep one record for later; False (and counted in ``dropped``) when it cannot."""
        return self.append_many([(topic, key, value)]) == 1

    def append_many(self, records: Iterable[Record]) -> int:
        """Keep several records with one write and one fsync; returns how many were kept."""
        frames = [encode_record(*r) for r in records]
        room = self.max_bytes - self.size_bytes
        kept: list[bytes] = []
        for frame in frames:
            if len(frame) > room:
                break
            kept.append(frame)
            room -= len(frame)
        full = len(kept) < len(frames)
        if kept and not self._write(b"".join(kept)):
            kept = []
        if len(kept) < len(frames):
            reason = (
                f"full: {self.size_bytes} of {self.max_bytes} bytes"
                if full or self._write_error is None
                else f"write failed: {self._write_error}"
            )
            self._count_drops(len(frames) - len(kept), reason)
        self.pending += len(kept)
        return len(kept)

    def replay(self, producer: Producer, batch: int = 500, flush_timeout_s: float = 30.0) -> int:
        """Re-publish everything in order, oldest first; returns how many records went out.

        A segment is deleted only after the producer took all of it and ``flush`` reported it
        durable. If publishing fails, ``QueueError`` propagates and the segment stays (its
        records may then be published again later: at-least-once, sinks dedupe by request id).
        Slots of processes that died are drained too.
        """
        return self._replay_segments(producer, batch, flush_timeout_s) + self._replay_orphans(
            producer, batch, flush_timeout_s
        )

    def close(self) -> None:
        self._seal()
        os.close(self._lock_fd)

    # -- internals -------------------------------------------------------------------------

    def _segments(self) -> list[Path]:
        return sorted(self.directory.glob(f"*{_SUFFIX}"))

    def _recover(self, segment: Path) -> None:
        data = segment.read_bytes()
        records, good = decode_records(data)
        if good < len(data):
            log.warning(
                "spool %s: cut %d byte(s) of a torn record left by a crash",
                segment,
                len(data) - good,
            )
            os.truncate(segment, good)
        if records:
            self._sizes[segment] = good
            self.pending += len(records)
        else:
            segment.unlink()

    def _write(self, data: bytes) -> bool:
        try:
            if self._active is None or self._active_size >= self._segment_bytes:
                self._roll()
            assert self._active is not None
            view = memoryview(data)
            while view:
                view = view[os.write(self._active, view) :]
            if self._fsync:
                os.fsync(self._active)
        except OSError as exc:
            # Disk full or failing: undo any partial frame so the segment stays readable. Logged
            # with the drop it causes (rate-limited): a full disk fails every batch.
            self._write_error = str(exc)
            if self._active is not None:
                try:
                    os.ftruncate(self._active, self._active_size)
                except OSError:
                    self._seal()
            return False
        self._active_size += len(data)
        self._sizes[self._active_path] = self._active_size
        self._write_error = None
        return True

    def _roll(self) -> None:
        self._seal()
        existing = self._segments()
        number = int(existing[-1].stem) + 1 if existing else 1
        self._active_path = self.directory / f"{number:012d}{_SUFFIX}"
        self._active = os.open(self._active_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        self._active_size = 0
        if self._fsync:  # the new file's name must survive a power loss too, not just its bytes
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def _seal(self) -> None:
        if self._active is not None:
            os.close(self._active)
            self._active = None
            self._active_size = 0

    def _count_drops(self, n: int, reason: str) -> None:
        self.dropped += n
        now = time.monotonic()
        if now - self._last_drop_log >= self._log_every_s:
            self._last_drop_log = now
            log.error(
                "spool %s could not keep %d record(s) (%s): dropped %d record(s) so far",
                self.directory,
                n,
                reason,
                self.dropped,
            )

    def _replay_orphans(self, producer: Producer, batch: int, flush_timeout_s: float) -> int:
        sent = 0
        for sibling in sorted(self.directory.parent.glob("slot-*")):
            if sibling == self.directory or not sibling.is_dir():
                continue
            try:
                orphan = Spool(sibling, self.max_bytes, fsync=self._fsync)
            except QueueError:
                continue  # a live process owns it
            try:
                sent += orphan._replay_segments(producer, batch, flush_timeout_s)
            finally:
                orphan.close()
        return sent

    def _replay_segments(self, producer: Producer, batch: int, flush_timeout_s: float) -> int:
        self._seal()
        sent = 0
        for segment in self._segments():
            try:
                records, _ = decode_records(segment.read_bytes())
            except OSError as exc:
                raise QueueError(f"spool replay: cannot read {segment}: {exc}") from exc
            for topic, run in _runs(records, batch):
                producer.publish_batch(topic, run)
            left = producer.flush(flush_timeout_s)
            if left:
                raise QueueError(f"spool replay: {left} record(s) not confirmed by the queue")
            failed = _take_failed(producer)
            segment.unlink()
            self._sizes.pop(segment, None)
            self.pending -= len(records)
            sent += len(records)
            if failed:
                self.append_many(failed)
                raise QueueError(f"spool replay: {len(failed)} delivery(ies) failed")
        return sent


def _runs(
    records: list[Record], size: int
) -> Iterator[tuple[str, list[tuple[bytes | None, bytes]]]]:
    """Consecutive same-topic records in chunks of at most ``size``, order kept."""
    run: list[tuple[bytes | None, bytes]] = []
    current = ""
    for topic, key, value in records:
        if run and (topic != current or len(run) >= size):
            yield current, run
            run = []
        current = topic
        run.append((key, value))
    if run:
        yield current, run


def _take_failed(producer: Producer) -> list[Record]:
    take = getattr(producer, "take_failed", None)
    return list(take()) if take is not None else []
