"""Processes and shared memory, the one home for both (psutil): whether a pid runs (a zombie,
killed but not yet reaped, counts as gone), a server's process group, the /dev/shm segments
processes map or own, waiting for a server to answer or to exit, and stopping a group with what
it leaves behind. scripts/lib.sh reaches these through ``repro proc`` (servers/cli.py); the
preflight, the preload server, the samplers and the tests import them."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

SHM = Path("/dev/shm")
# vLLM workers register LMCache segments named after their pid, which nobody unlinks.
OWNED_SEGMENT = re.compile(r"lmcache_kv_(\d+)_\d+")


def running(pid: int, started_by: float | None = None) -> bool:
    """The process exists and is not a zombie; with ``started_by`` (a time), it also started by
    then (not a later process given the same pid)."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and (started_by is None or proc.create_time() <= started_by + 1.0)
    except (psutil.NoSuchProcess, ProcessLookupError):
        return False
    except psutil.AccessDenied:
        return True


def alive(pids: Iterable[int]) -> set[int]:
    """Those of ``pids`` that still run."""
    return {pid for pid in pids if running(pid)}


def group(leader: int) -> list[int]:
    """Live processes of the process group led by ``leader`` (a server and what it spawned)."""
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == leader:
                found.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def _shm_paths(proc: psutil.Process) -> set[str]:
    paths: set[str] = set()
    try:  # Linux: the maps file is much faster to read than psutil's smaps-based memory_maps()
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        paths.update(parts[5] for line in maps.splitlines() if len(parts := line.split(maxsplit=5)) == 6)
    except OSError:  # elsewhere, or a process that is gone or not ours
        pass
    with contextlib.suppress(psutil.Error, OSError):
        paths.update(f.path for f in proc.open_files())
    return {p.split(" (deleted)")[0] for p in paths if p.startswith(f"{SHM}/")}


def shm_of(pids: Iterable[int]) -> set[str]:
    """The /dev/shm files these processes map or hold open."""
    found: set[str] = set()
    for pid in pids:
        try:
            found |= _shm_paths(psutil.Process(pid))
        except psutil.Error:
            continue
    return found


def shm_mapped(pids: Iterable[int]) -> dict[str, int]:
    """/dev/shm files these processes map or hold open -> their size in bytes (0 once unlinked)."""
    sizes = {}
    for path in sorted(shm_of(pids)):
        try:
            sizes[path] = os.stat(path).st_size
        except OSError:
            sizes[path] = 0
    return sizes


def mapped_anywhere() -> set[str]:
    """The /dev/shm files any live process maps or holds (one pass over every process)."""
    found: set[str] = set()
    for proc in psutil.process_iter():
        found |= _shm_paths(proc)
    return found


def owned_segments(pids: Iterable[int], prefix: str = "lmcache_kv_", shm: Path = SHM) -> list[Path]:
    """Segments named after one of these processes (default: vLLM workers' LMCache segments,
    /dev/shm/lmcache_kv_<pid>_<n>; ``prefix="lmcache_"``: any of LMCache's with _<pid>_ in the name)."""
    marks = [f"_{pid}_" for pid in pids]
    if not shm.is_dir():
        return []
    return sorted(p for p in shm.glob(f"{prefix}*") if any(mark in p.name[len(prefix) - 1 :] for mark in marks))


def stale_segments(shm: Path = SHM) -> list[Path]:
    """LMCache segments of vLLM workers that are gone and that no live process maps any more."""
    if not shm.is_dir():
        return []
    dead = [p for p in shm.glob("lmcache_kv_*") if (m := OWNED_SEGMENT.fullmatch(p.name)) and not running(int(m.group(1)))]
    if not dead:
        return []
    mapped = mapped_anywhere()
    return [p for p in dead if str(p) not in mapped]


def answers(url: str) -> bool:
    """An http(s) URL answers with success, a tcp://HOST:PORT accepts connections, or a
    unix:PATH preload server answers its ping."""
    if url.startswith("unix:"):
        from reproduce_vllm_lmcache.servers.preload import answers as preload_answers

        return preload_answers(Path(url.removeprefix("unix:")))
    if url.startswith("tcp://"):
        host, _, port = url.removeprefix("tcp://").rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                return True
        except OSError:
            return False
    import requests  # here, not at the top: `repro proc running` (bash polls it) needs no HTTP

    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def tail(log: Path, lines: int) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {log})"


def wait_ready(name: str, pid: int, url: str, timeout: float, log: Path, say: Callable[[str], None], hint: str = "") -> bool:
    """Poll ``url`` until it answers; False, with the log's tail said, if the process dies or
    the timeout passes. Says how long it has waited every 15 s."""
    start = time.monotonic()
    next_note = 15.0
    while not answers(url):
        waited = time.monotonic() - start
        if not running(pid):
            say(f"error: {name} (pid {pid}) exited before it was ready; last lines of {log}:\n{tail(log, 40)}")
            if hint:
                say(hint)
            return False
        if waited >= timeout:
            say(f"error: {name} not ready at {url} after {timeout:g} s; last lines of {log}:\n{tail(log, 20)}")
            return False
        if waited >= next_note:
            say(f"{name}: waiting for {url} ({int(waited)} s)")
            next_note += 15
        time.sleep(0.25)
    return True


def wait_gone(pids: Iterable[int], timeout: float, leader: int | None = None) -> set[int]:
    """Wait up to ``timeout`` s for ``pids`` (and the group of ``leader``) to end; what still runs."""
    deadline = time.monotonic() + timeout
    while True:
        left = alive(pids) | (set(group(leader)) if leader is not None else set())
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


def _signal_group(leader: int, sig: signal.Signals) -> None:
    try:
        os.killpg(leader, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(leader, sig)


def stop_group(name: str, leader: int, grace: float, remembered: Iterable[int] = (), say: Callable[[str], None] = print) -> None:
    """SIGTERM the process group led by ``leader``, SIGKILL what is left after ``grace`` s, then
    remove the shared-memory segments it leaves: those named after its processes (always; the
    LMCache server keeps vLLM workers' segments mapped) and those it mapped (unless another
    process still maps them). ``remembered``: pids of the group seen earlier (a worker that
    died before this stop still owns its segments)."""
    running_now = group(leader)
    pids = set(running_now) | set(remembered) | {leader}
    mapped = shm_of(pids)
    owned = owned_segments(pids)
    if running_now:
        say(f"{name}: stopping pid {leader}")
        _signal_group(leader, signal.SIGTERM)
        if wait_gone((), grace, leader):
            say(f"{name}: still running after {grace:g} s, sending SIGKILL")
            _signal_group(leader, signal.SIGKILL)
            wait_gone((), 10, leader)
    for seg in owned:
        if seg.exists():
            seg.unlink(missing_ok=True)
            say(f"removed leftover shared memory {seg}")
    in_use = mapped_anywhere() if mapped else set()
    for path in sorted(mapped - in_use):
        seg = Path(path)
        if seg.exists():
            seg.unlink(missing_ok=True)
            say(f"removed leftover shared memory {seg}")
