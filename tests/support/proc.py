"""Which process is which under a supervisor: the descendants of a pid that listen on a TCP
port, read from ``/proc`` (Linux), so a test can SIGKILL ``llmtap serve``'s backend or one of its
proxies the way the kernel's OOM killer would."""

from __future__ import annotations

import os
from pathlib import Path


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                found.append(child)
                todo.append(child)
    return found


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def listening_on(root_pid: int, port: int) -> list[int]:
    """The descendants of ``root_pid`` holding a socket that listens on ``port``."""
    inodes = _listening_inodes(port)
    holders = []
    for pid in descendants(root_pid):
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue  # gone meanwhile
        if any(link.startswith("socket:[") and link[8:-1] in inodes for link in links):
            holders.append(pid)
    return sorted(holders)
