"""Setup is idempotent: a second run changes nothing and takes seconds."""

import subprocess
import time

import pytest

from reproduce_vllm_lmcache.config import ROOT
from reproduce_vllm_lmcache.workspace import bootstrap, pins


def snapshot() -> dict[str, str]:
    def out(*cmd: str) -> str:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout

    state = {"packages": out(bootstrap.uv_binary(), "pip", "freeze", "--python", str(ROOT / ".venv/bin/python"))}
    state["uv.lock"] = (ROOT / "uv.lock").read_text()
    for src in pins.sources():
        state[src.checkout] = out("git", "-C", str(src.path), "rev-parse", "HEAD")
        state[src.checkout + " edits"] = out("git", "-C", str(src.path), "status", "--porcelain", "--untracked-files=no")
    return state


@pytest.mark.setup
def test_second_setup_run_changes_nothing_and_is_fast() -> None:
    subprocess.run(["scripts/setup.sh"], cwd=ROOT, check=True, capture_output=True)
    before = snapshot()
    started = time.monotonic()
    result = subprocess.run(["scripts/setup.sh"], cwd=ROOT, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "setup complete" in result.stdout
    assert snapshot() == before
    assert elapsed < 30, f"rerun took {elapsed:.1f} s"
