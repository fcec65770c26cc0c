"""scripts/run.sh, the one-command way: servers up, client, table, everything stopped."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess

import pytest

from reproduce_vllm_lmcache.config import ROOT
from scripted_servers import alive, chunks_read, expected_hit, server_pids, shm_segments

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


def started_pids(output: str) -> set[int]:
    return server_pids(output) | {int(p) for p in re.findall(r"/dev/shm/lmcache_kv_(\d+)_", output)}


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return {**os.environ, "REPRO_RESULTS_DIR": str(tmp_path), "REPRO_PROMPT_TOKENS": "600"}


def test_run_sh_prints_the_table_and_cleans_up(env, tmp_path) -> None:
    """Every workspace patch (the default) stores, hits and answers the same. REPRO_PATCHES=upstream
    (the pristine code) is exercised by tests/test_faults.py, which also checks that only the
    patched LMCache runs the patched copy path."""
    result = subprocess.run([str(ROOT / "scripts/run.sh")], cwd=ROOT, env=env, capture_output=True, text=True)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    row = rf"^warm\s+p600\s+600\s+[\d.]+\s+[\d.]+\s+[\d.]+x\s+0/{chunks_read(600)}\s+{expected_hit(600)}\s+yes$"
    assert re.search(row, result.stdout, re.M), out
    assert "PASS p600 (600 tokens): hit on warm" in result.stdout
    (run_dir,) = (tmp_path / "runs").glob("*-run")
    assert (run_dir / "run.json").exists() and (run_dir / "logs" / "vllm.log").exists()
    assert json.loads((run_dir / "run.json").read_text())["config"]["patches"] == "all"
    assert (tmp_path / "latest.json").read_text() == (run_dir / "run.json").read_text()
    pids = started_pids(out)
    assert len(pids) >= 2 and not alive(pids) and not shm_segments(pids)


def test_run_sh_reports_a_server_that_dies_and_still_cleans_up(env) -> None:
    proc = subprocess.Popen(
        [str(ROOT / "scripts/run.sh")],
        cwd=ROOT,
        env={**env, "REPRO_PROMPT_TOKENS": "3000"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if "p3000 cold: sending" in line:
            vllm_pid = int(re.search(r"vllm: started, pid (\d+)", "".join(lines)).group(1))  # type: ignore[union-attr]
            os.kill(vllm_pid, signal.SIGKILL)
            break
    rest, _ = proc.communicate(timeout=300)
    out = "".join(lines) + rest
    assert proc.returncode != 0
    assert "error: the vllm server died during the run; last lines of its log:" in out, out[-3000:]
    pids = started_pids(out)
    assert not alive(pids), f"left running: {alive(pids)}"
    assert not shm_segments(pids)
