"""Preflight's clean-up of what SIGKILLed start scripts leave: private TMPDIRs of gone servers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from reproduce_vllm_lmcache.servers.preflight import SERVER_PID_FILE, remove_stale_tmpdirs, stale_tmpdirs


def server_tmpdir(root: Path, name: str, pid: int | None, mtime: float | None = None) -> Path:
    folder = root / name
    folder.mkdir()
    if pid is not None:
        (folder / SERVER_PID_FILE).write_text(f"{pid}\n")
        if mtime is not None:
            os.utime(folder / SERVER_PID_FILE, (mtime, mtime))
    return folder


def test_only_folders_of_gone_servers_are_stale(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        dead = server_tmpdir(tmp_path, "repro-vllm.aaaaaa", gone.pid)
        running = server_tmpdir(tmp_path, "repro-lmcache.bbbbbb", live.pid)
        # The same pid, but written before that process started: a reused pid, so the server is gone.
        reused = server_tmpdir(tmp_path, "repro-redis.cccccc", live.pid, mtime=time.time() - 3600)
        starting = server_tmpdir(tmp_path, "repro-vllm.dddddd", None)
        other = server_tmpdir(tmp_path, "other.eeeeee", gone.pid)
        assert stale_tmpdirs(tmp_path) == sorted([dead, reused])
        target = tmp_path / "compile-cache"
        target.mkdir()
        (target / "kept").write_text("x")
        (dead / "torchinductor_user").symlink_to(target)
        lines = remove_stale_tmpdirs(tmp_path)
        assert len(lines) == 2 and all("private TMPDIR of a server that is gone" in line for line in lines)
        assert not dead.exists() and not reused.exists()
        assert running.exists() and starting.exists() and other.exists()
        assert (target / "kept").exists(), "the link was followed"
    finally:
        live.kill()
        live.wait()
