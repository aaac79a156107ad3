"""Everything llmtap stores is readable by its owner only: directories 0700, files 0600.

Logged calls hold prompts, answers and (fingerprints of) keys; nobody but the account that runs
llmtap should read them. Two layers (docs/decisions/2026-12-01-data-at-rest.md):

* every entry point sets the process umask to 0o077 (:func:`restrict_umask`), which covers files
  created by code we do not control (chDB's parts, SQLite's ``-wal``/``-shm``, temporary files);
* every adapter asks for owner-only modes itself (:func:`private_dirs`, :func:`private_file`), so
  the stores are private when used as a library in a process with a looser umask, and tightens the
  directory it owns when an older version left it open (:func:`tighten`, logged once).

A directory we did not create and do not own outright (the parent of a database path the user
chose) is never changed: only the data directory, each store's own directory and our files are.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("llmtap.files")

DIR_MODE = 0o700
FILE_MODE = 0o600
UMASK = 0o077


def restrict_umask() -> None:
    """New files and directories of this process (and of the children it starts) get no group or
    other permission bits, whoever creates them."""
    os.umask(UMASK)


def private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents 0700; existing ones are left as they are."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # another process or thread made it in between


def tighten(path: Path) -> None:
    """Drop the group and other bits of ``path`` if it has any (a data directory made by an older
    version, or under a looser umask). Once a directory is 0700 nothing inside is reachable by
    anyone else, whatever the files' own modes."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & UMASK:
        path.chmod(mode & ~UMASK)
        log.warning(
            "%s was readable by other users (mode %o): now %o, owner only",
            path,
            mode,
            mode & ~UMASK,
        )


def private_root(path: Path) -> None:
    """A directory llmtap owns outright (the data directory, a store's directory): created 0700,
    tightened if it exists with looser bits."""
    private_dirs(path)
    tighten(path)


def private_file(path: Path) -> None:
    """Create ``path`` empty and 0600 if missing, tighten it if it exists.

    Used before SQLite opens a database: SQLite gives the ``-wal`` and ``-shm`` files the mode of
    the database file, so they are 0600 too.
    """
    private_dirs(path.parent)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE))
    tighten(path)
    for suffix in ("-wal", "-shm", "-journal"):
        tighten(path.with_name(path.name + suffix))
