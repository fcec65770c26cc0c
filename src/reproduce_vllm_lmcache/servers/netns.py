"""Linux network namespaces, as scripts/nodes.sh makes them (`ip netns add NAME`): join a
process's namespace (a server forked by the preload server joins its start script's), and talk
to a server inside a named namespace from this process (one thread at a time: a network
namespace belongs to a thread, and a socket keeps the namespace it was made in)."""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from pathlib import Path

CLONE_NEWNET = 0x40000000
NAMED = Path("/var/run/netns")  # where `ip netns add` keeps its namespaces


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns(CLONE_NEWNET): {os.strerror(err)} (joining a network namespace needs root)")


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None  # no /proc (macOS) or the process is gone


def same_as(pid: int) -> bool:
    """Whether process ``pid`` is in this thread's network namespace (True where it cannot tell)."""
    theirs, ours = _inode(f"/proc/{pid}/ns/net"), _inode("/proc/thread-self/ns/net")
    return theirs is None or ours is None or theirs == ours


def join_process(pid: int) -> None:
    """Move this (single-threaded) process into process ``pid``'s network namespace."""
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        _setns(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def entered(name: str | None) -> Iterator[None]:
    """Inside: this thread is in the named namespace (None or "": stays where it is); sockets
    made inside keep it after the block."""
    if not name:
        yield
        return
    target = NAMED / name
    if not target.exists():
        raise FileNotFoundError(f"no network namespace {name!r} ({target}); scripts/nodes.sh makes it")
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        fd = os.open(target, os.O_RDONLY)
        try:
            _setns(fd)
        finally:
            os.close(fd)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)
