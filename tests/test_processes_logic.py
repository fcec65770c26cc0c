"""servers/processes.py on real processes: a zombie counts as gone, a group is stopped with what
it leaves in /dev/shm (segments named after its processes; segments it mapped unless another
process still maps them), and `repro proc` gives bash the same answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reproduce_vllm_lmcache.config import ROOT
from reproduce_vllm_lmcache.servers import processes

pytestmark = pytest.mark.skipif(not processes.SHM.is_dir(), reason="needs /dev/shm (Linux)")

# A "server": its own process group, a worker that maps one segment and owns another by name,
# and ignores SIGTERM when asked to (so that the SIGKILL path runs).
SERVER = textwrap.dedent("""
    import mmap, os, signal, sys, time
    ignore = sys.argv[2] == "ignore"
    if ignore:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.fork() == 0:
        owned = f"/dev/shm/lmcache_kv_{os.getpid()}_0"
        open(owned, "wb").write(b"x" * 4096)
        fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
        os.ftruncate(fd, 4096)
        m = mmap.mmap(fd, 4096)
        print(os.getpid(), flush=True)
        time.sleep(120)
    time.sleep(120)
""")


def start(mapped: Path, ignore_term: bool = False) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(mapped), "ignore" if ignore_term else "term"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    worker = int(proc.stdout.readline())
    return proc, worker


@pytest.mark.parametrize("ignore_term", [False, True], ids=["sigterm", "sigkill"])
def test_stop_group_stops_workers_and_removes_their_segments(tmp_path: Path, ignore_term: bool) -> None:
    mapped = processes.SHM / f"repro-test-{os.getpid()}-{ignore_term}"
    proc, worker = start(mapped, ignore_term)
    try:
        assert set(processes.group(proc.pid)) == {proc.pid, worker}
        assert str(mapped) in processes.shm_of([worker]) and processes.shm_mapped([worker])[str(mapped)] == 4096
        owned = processes.owned_segments([worker])
        assert owned == [processes.SHM / f"lmcache_kv_{worker}_0"]
        lines: list[str] = []
        processes.stop_group("test", proc.pid, grace=1, say=lines.append)
        proc.wait(5)
        assert not processes.alive({proc.pid, worker}) and not processes.group(proc.pid)
        assert not mapped.exists() and not owned[0].exists()
        assert ("still running after 1 s, sending SIGKILL" in " ".join(lines)) == ignore_term
    finally:
        os.killpg(proc.pid, signal.SIGKILL) if processes.group(proc.pid) else None
        mapped.unlink(missing_ok=True)
        for seg in processes.owned_segments([worker]):
            seg.unlink()


def test_a_segment_another_process_maps_is_kept(tmp_path: Path) -> None:
    mapped = processes.SHM / f"repro-test-shared-{os.getpid()}"
    first, _ = start(mapped)
    second, other = start(mapped)  # maps the same file
    try:
        processes.stop_group("first", first.pid, grace=5, say=lambda _: None)
        first.wait(5)
        assert mapped.exists() and str(mapped) in processes.mapped_anywhere()
        processes.stop_group("second", second.pid, grace=5, say=lambda _: None)
        second.wait(5)
        assert not mapped.exists() and not processes.owned_segments([other])
    finally:
        for proc in (first, second):
            if processes.group(proc.pid):
                os.killpg(proc.pid, signal.SIGKILL)
        mapped.unlink(missing_ok=True)


def test_a_zombie_counts_as_gone_and_repro_proc_agrees() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    assert processes.wait_gone({child.pid}, 10) == set()  # exited, not reaped yet: a zombie
    repro = [str(ROOT / ".venv" / "bin" / "repro"), "proc", "running"]
    assert subprocess.run([*repro, str(child.pid)]).returncode == 1
    assert subprocess.run([*repro, str(child.pid), str(os.getpid())]).returncode == 0
    child.wait()
    assert not processes.running(child.pid)
