"""FileBodyStore: bodies as files under one directory (``file:///dir``), laid out by key.

Writes go to a temporary file in the target directory and are renamed into place, so a reader
sees the whole body or none of it, never a half-written one. No fsync: bodies are written at
proxy throughput, and a process crash loses nothing (the page cache survives it); only a crash of
the whole machine could lose the last moments of bodies, which the records then point at in vain
(the consumer retries and dead-letters such a record instead of inventing a body).
"""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

from llmtap.errors import StoreError, StoreUnavailable
from llmtap.private_files import FILE_MODE, private_dirs, private_root
from llmtap.stores.bodies.port import split_key

# errors that pass (full disk, I/O hiccup, too many open files): the caller may try again
_TRANSIENT = {errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EAGAIN, errno.EMFILE, errno.ENFILE}


OPEN_PACKS = 32


class FileBodyStore:
    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        try:
            private_root(self.root)
        except OSError as err:
            raise _translate(err, f"create {self.root}") from err
        # Paths are plain strings below: building and hashing a Path per body read was 5 % of
        # the consumer's time (``PurePath._cparts``), and the OS calls take strings anyway.
        self._root = str(self.root)
        # Directories known to exist: the proxy's shipper writes two bodies per call, and a
        # mkdir per write was a third of its time. A directory removed behind our back is
        # recreated on the write that finds it missing.
        self._dirs: set[str] = set()
        # unique temporary names without asking the OS for randomness on every write
        self._tmp_prefix = f".tmp-{os.getpid()}-{id(self):x}-"
        self._tmp_counter = itertools.count()
        # Packs recently read from (by key), kept open: the consumer reads a batch's bodies from the same
        # few packs, and an open() per slice was most of its body-loading time. Packs are never
        # rewritten (a new pack has a new name), so an open descriptor cannot go stale.
        self._packs: OrderedDict[str, int] = OrderedDict()
        self._packs_lock = threading.Lock()

    def _path(self, key: str) -> str:
        parts = key.split("/")
        # keys carry caller-chosen request ids: never let one climb out of the root
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise KeyError(key)
        if any(p.startswith(".tmp-") for p in parts) or "\x00" in key:
            raise KeyError(key)
        return os.path.join(self._root, *parts)

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        try:
            path = self._path(key)
        except KeyError:
            raise StoreError(f"unsafe body key {key!r}") from None
        parent = os.path.dirname(path)
        tmp = os.path.join(parent, f"{self._tmp_prefix}{next(self._tmp_counter)}")
        try:
            if parent not in self._dirs:
                private_dirs(Path(parent))
                self._dirs.add(parent)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            except FileNotFoundError:
                self._dirs.discard(parent)
                private_dirs(Path(parent))
                self._dirs.add(parent)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as err:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise _translate(err, f"write {key!r}") from err

    def get(self, key: str) -> bytes:
        name, offset, length = split_key(key)
        try:
            if offset is None or length is None:
                with open(self._path(name), "rb") as whole:
                    return whole.read()
            data = os.pread(self._pack_fd(name), length, offset)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise KeyError(key) from None
        except OSError as err:
            raise _translate(err, f"read {key!r}") from err
        if len(data) != length:
            raise StoreError(f"body store: pack {name!r} is shorter than slice {key!r}")
        return data

    def open_stream(self, key: str) -> BinaryIO:
        """The body as a file to read in chunks (the caller closes it); ``KeyError`` if none."""
        name, offset, _ = split_key(key)
        if offset is not None:
            return io.BytesIO(self.get(key))  # a slice is one call's body: bounded, small
        path = self._path(name)
        try:
            return open(path, "rb")  # the caller closes it
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise KeyError(key) from None
        except OSError as err:
            raise _translate(err, f"open {key!r}") from err

    def _pack_fd(self, name: str) -> int:
        """An open descriptor of pack ``name`` (a key, checked by ``_path`` when first opened:
        a batch reads hundreds of slices of the same few packs, and checking and joining the
        key for each one was two thirds of the time spent reading bodies)."""
        with self._packs_lock:
            fd = self._packs.get(name)
            if fd is not None:
                self._packs.move_to_end(name)
                return fd
            fd = os.open(self._path(name), os.O_RDONLY)
            self._packs[name] = fd
            if len(self._packs) > OPEN_PACKS:
                os.close(self._packs.popitem(last=False)[1])
            return fd

    def close(self) -> None:
        with self._packs_lock:
            for fd in self._packs.values():
                os.close(fd)
            self._packs.clear()


def _translate(err: OSError, what: str) -> StoreError:
    if err.errno in _TRANSIENT:
        return StoreUnavailable(f"body store: cannot {what}: {err}")
    return StoreError(f"body store: cannot {what}: {err}")
