"""The preload server's pure parts, and a real one starting a small Python program."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reproduce_vllm_lmcache.config import ROOT
from reproduce_vllm_lmcache.servers import preload, processes


def test_split_env_takes_the_assignments_of_an_env_prefix() -> None:
    assert preload.split_env(["env", "A=1", "B=x=y", "/bin/prog", "--c=2"]) == ({"A": "1", "B": "x=y"}, ["/bin/prog", "--c=2"])
    assert preload.split_env(["/bin/prog", "A=1"]) == ({}, ["/bin/prog", "A=1"])


def test_a_vllm_from_another_tree_is_detected_on_pythonpath(tmp_path: Path) -> None:
    """REPRO_PATCHES=upstream puts a pristine vLLM tree first: the preloaded one must not serve it."""
    (tmp_path / "tree" / "vllm").mkdir(parents=True)
    (tmp_path / "tree" / "vllm" / "__init__.py").write_text("")
    assert preload.vllm_root(f"{tmp_path / 'other'}{os.pathsep}{tmp_path / 'tree'}") == tmp_path / "tree"
    assert preload.vllm_root(str(tmp_path / "other")) is None
    assert preload.vllm_root("") is None


def test_preload_never_imports_lmcache_and_vllm_only_when_asked() -> None:
    assert not [m for m in preload.PRELOAD if m.split(".")[0] in ("vllm", "lmcache")]
    assert all(m.startswith("vllm.") for m in preload.PRELOAD_VLLM)


def test_an_edit_after_the_preload_refuses_vllm_starts_only(tmp_path: Path) -> None:
    """A preloaded vllm/ file that changed (or vanished) makes vLLM starts fail as stale, so a
    forked vLLM never runs old code; other programs still start."""
    source = tmp_path / "engine.py"
    source.write_text("x = 1\n")
    server = preload.Server(tmp_path / "p.sock")
    server.vllm_files = {str(source): source.stat().st_mtime_ns}
    assert preload.changed(server.vllm_files) is None
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 1_000_000))
    assert preload.changed(server.vllm_files) == str(source)
    vllm = tmp_path / "vllm"
    vllm.write_text(f"#!{sys.executable}\n")
    with pytest.raises(preload.Stale, match="engine.py changed after this preload server imported it"):
        server.spawn({"argv": [str(vllm), "serve"], "env": {}, "cwd": str(tmp_path), "log": str(tmp_path / "log"), "owner": os.getpid()})
    source.unlink()
    assert preload.changed(server.vllm_files) == str(source)


def test_a_vllm_asking_for_another_allocator_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A forked process keeps the preload server's LD_PRELOAD: a vLLM start that asks for
    another (REPRO_VLLM_MALLOC changed) must start directly instead of running the wrong malloc."""
    monkeypatch.setenv("LD_PRELOAD", "/lib/a.so")
    server = preload.Server(tmp_path / "p.sock")
    vllm = tmp_path / "vllm"
    vllm.write_text(f"#!{sys.executable}\n")
    request = {"argv": ["env", "LD_PRELOAD=/lib/b.so", str(vllm), "serve"], "env": {}, "cwd": str(tmp_path), "log": str(tmp_path / "log")}
    with pytest.raises(preload.Stale, match="REPRO_VLLM_MALLOC differs"):
        server.spawn({**request, "owner": os.getpid()})


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX fork")
def test_forked_program_gets_its_env_log_and_dies_with_its_owner(tmp_path: Path) -> None:
    """A real preload server (with nothing preloaded) forks a program for an owner process;
    the program sees the requested environment, writes to its log, and is stopped when the
    owner dies."""
    program = tmp_path / "prog"
    program.write_text(
        f"#!{sys.executable}\nimport os, sys, time\nprint('hello', os.environ['GREETING'], sys.argv[1:], flush=True)\ntime.sleep(600)\n"
    )
    program.chmod(0o755)
    sock = tmp_path / "p.sock"
    code = f"import sys; from reproduce_vllm_lmcache.servers import preload; preload.PRELOAD = ('setproctitle',); sys.exit(preload.main(['serve', '--socket', {str(sock)!r}]))"
    server = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    owner = subprocess.Popen(["sleep", "600"])
    try:
        deadline = time.monotonic() + 30
        while not preload.answers(sock) and time.monotonic() < deadline:
            time.sleep(0.2)
        log = tmp_path / "prog.log"
        os.environ["GREETING"] = "world"
        try:
            pid = preload.request(sock, ["env", "EXTRA=1", str(program), "arg"], str(log), owner.pid)
        finally:
            del os.environ["GREETING"]
        deadline = time.monotonic() + 30
        while "hello" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "hello world ['arg']" in log.read_text()
        assert os.getpgid(pid) == pid, "the program leads its own process group"
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists():  # ps shows the program, not the preload server
            assert cmdline.read_bytes().replace(b"\0", b" ").strip().startswith(f"{program} arg".encode())
        owner.kill()  # not reaped yet: a zombie owner counts as gone
        deadline = time.monotonic() + 30
        while processes.running(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not processes.running(pid), "the program outlived its owner"
        with pytest.raises(RuntimeError, match="not a Python"):
            preload.request(sock, ["/bin/sleep", "1"], str(log), os.getpid())
    finally:
        owner.kill()
        owner.wait()
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert "preload: stopped" in out, out
