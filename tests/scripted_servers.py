"""Start the workspace's own server scripts (terminals A and B) from tests, and stop them as a
user would, with Ctrl-C (SIGINT)."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from reproduce_vllm_lmcache.config import ROOT
from reproduce_vllm_lmcache.servers import processes

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class ScriptedServer:
    """A server script run as from a terminal; ``tee``: as ``script 2>&1 | tee FILE``, where
    Ctrl-C also kills the pipe's reader before the script cleans up."""

    def __init__(self, script: str, env: dict[str, str], tee: Path | None = None) -> None:
        self.script = script
        self.lines: list[str] = []
        argv = [str(ROOT / "scripts" / script)]
        if tee is not None:
            argv = ["bash", "-c", '"$0" 2>&1 | tee "$1"', argv[0], str(tee)]
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            # As from a terminal: Ctrl-C must reach the script even when this test run was
            # started in the background (where a shell makes SIGINT ignored, and bash cannot
            # trap a signal that was ignored when it started).
            preexec_fn=_default_sigint,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.group: set[int] = set()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := re.search(pattern, line):
                    return match
            if self.proc.poll() is not None:
                self._reader.join(5)  # every line it wrote
                raise AssertionError(f"{self.script} exited ({self.proc.returncode}):\n{self.output[-4000:]}")
            time.sleep(0.5)
        raise AssertionError(f"{self.script}: no {pattern!r} after {timeout} s:\n{self.output[-4000:]}")

    @property
    def server_pid(self) -> int:
        return int(self.wait_for(r"started, pid (\d+)", 5).group(1))

    @property
    def script_pid(self) -> int:
        """The start script's own pid (under ``tee``, the pipeline's shell is the leader)."""
        if self.proc.args[0] == "bash":  # type: ignore[index]
            kids = psutil.Process(self.proc.pid).children()
            return next(k.pid for k in kids if self.script in " ".join(k.cmdline()))
        return self.proc.pid

    def remember_group(self) -> set[int]:
        """Every process of the server's process group (workers included), while it runs."""
        pgid = self.server_pid
        self.group = {p.pid for p in psutil.process_iter() if _pgid(p.pid) == pgid}
        return self.group

    def interrupt(self, timeout: float = 90) -> int:
        """Ctrl-C, as in a terminal; returns the script's exit status."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        # And as the scripts treat their own servers (lib.sh's with_parent): SIGTERM when this
        # test run dies, even by SIGKILL (a CI timeout), so the script's trap stops what it started.
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def alive(pids: set[int]) -> set[int]:
    """Those still running, after a short grace for a group that is going (servers/processes.py)."""
    return processes.wait_gone(pids, 10)


def shm_segments(pids: set[int]) -> list[Path]:
    return processes.owned_segments(pids, prefix="lmcache_")


def server_pids(output: str) -> set[int]:
    """PIDs of the servers a script's output says it started (lib.sh's start_server line)."""
    return {int(p) for p in re.findall(r"started, pid (\d+)", output)}


def chunk_size() -> int:
    from reproduce_vllm_lmcache.servers.settings import Settings

    return Settings.from_env().chunk_size


def expected_hit(tokens: int) -> int:
    """Tokens LMCache serves to a repeated prompt of ``tokens`` at the configured chunk size."""
    from reproduce_vllm_lmcache.experiments.scenarios import full_chunks

    return full_chunks(tokens, chunk_size())


def chunks_read(tokens: int) -> int:
    """Chunks LMCache reads for that hit (the last one may be used all but its last token)."""
    return -(-expected_hit(tokens) // chunk_size())


def run_script(script: str, env: dict[str, str]) -> str:
    """Run scripts/SCRIPT to its end: it must succeed and leave none of the servers it started
    (their PIDs from its output) running or holding /dev/shm segments. Its output."""
    result = subprocess.run([str(ROOT / "scripts" / script)], cwd=ROOT, env=env, capture_output=True, text=True)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-6000:]
    pids = server_pids(out)
    assert pids and not alive(pids) and not shm_segments(pids), f"left behind: {alive(pids)}"
    return out
