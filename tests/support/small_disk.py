"""A small filesystem of the test's own (tmpfs), to fill up and free again: a disk that runs out
of space under a data directory, for real (``ENOSPC`` from the kernel, not a mocked error).

Mounting needs root (or ``CAP_SYS_ADMIN``): the tests run as root here and in CI. Where the mount
is refused, ``SmallDisk.mount`` skips the test saying why (in CI it fails instead, so a runner
that lost the capability is noticed).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest

_FILLER = "filler"


class SmallDisk:
    def __init__(self, path: Path, size_mib: int = 64) -> None:
        self.path = path
        self.size_mib = size_mib
        self.mounted = False

    def mount(self) -> SmallDisk:
        self.path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mib}m,mode=0700", "tmpfs", self.path],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            reason = f"cannot mount a tmpfs for a full-disk test: {done.stderr.strip()}"
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(reason, pytrace=False)
            pytest.skip(reason)
        self.mounted = True
        return self

    def free_bytes(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def fill(self, leave_bytes: int = 0) -> None:
        """Take every free byte but ``leave_bytes`` (the kernel's own ENOSPC ends the fill)."""
        chunk = b"\0" * (1 << 20)
        fd = os.open(self.path / _FILLER, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while (room := self.free_bytes() - leave_bytes) > 0:
                os.write(fd, chunk[: min(len(chunk), room)])
        except OSError:
            pass  # full: what we wanted
        finally:
            os.close(fd)

    def free(self) -> None:
        """Space returns, like an operator deleting old files."""
        with contextlib.suppress(FileNotFoundError):
            (self.path / _FILLER).unlink()

    def unmount(self) -> None:
        if self.mounted:
            # lazy: a child killed a moment ago may still hold a file open on it
            subprocess.run(["umount", "-l", self.path], check=False, capture_output=True)
            self.mounted = False

    def __enter__(self) -> SmallDisk:
        return self.mount()

    def __exit__(self, *exc: object) -> None:
        self.unmount()
