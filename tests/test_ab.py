"""The interleaved A/B on the real servers: a short scripts/calibrate.sh, one A/A and one planted
slowdown (a real one-line edit in the editable LMCache checkout, undone afterwards). The planted
A/B must call warm TTFT slower and the A/A must not; every sample must hit; nothing is left
running. The recorded calibration (20 A/Bs of each kind, the default knobs) is docs/ab.md's."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from reproduce_vllm_lmcache.config import ROOT
from reproduce_vllm_lmcache.experiments import ab_calibrate
from scripted_servers import alive, server_pids, shm_segments

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]


def test_short_calibration_finds_the_planted_slowdown_and_not_the_a_a(tmp_path) -> None:
    env = {
        **os.environ,
        "REPRO_RESULTS_DIR": str(tmp_path),
        "REPRO_CALIBRATE_SESSIONS": "1",
        # 30 ms (about 15 % of a warm request here): a short A/B resolves a few percent, not 5 ms.
        "REPRO_CALIBRATE_SLEEP_S": "0.03",
        "REPRO_NOISE_THRESHOLD": "0.05",
        "REPRO_AB_PROMPT_TOKENS": "640",
        "REPRO_AB_MIN_BLOCKS": "3",  # the least the A/B accepts
        "REPRO_AB_MAX_BLOCKS": "3",
        "REPRO_AB_WARM_REPEATS": "3",
        "REPRO_AB_WARMUP_BLOCKS": "0",  # both arms' first requests are warmed by the start scripts
        # Both arms forked by the suite's preload server (conftest.py), as the recorded A/B of
        # preload-forked against direct starts allows (docs/ab.md).
        "REPRO_AB_PRELOAD": os.environ.get("REPRO_PRELOAD", "auto"),
    }
    result = subprocess.run([str(ROOT / "scripts/calibrate.sh")], cwd=ROOT, env=env, capture_output=True, text=True)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-5000:]
    (run_dir,) = tmp_path.glob("runs/*-calibrate")
    cal = json.loads((run_dir / "calibration.json").read_text())
    assert cal["planted_detected"] == 1, (run_dir / "calibration.md").read_text()
    assert cal["aa_false_verdicts"]["ttft_warm"] == 0 and cal["aa_false_verdicts"]["ttft_cold"] == 0
    assert cal["planted"]["added_ms_pooled"] > 15, cal["planted"]  # most of the 30 ms reach the client
    for kind in ("aa", "planted"):
        (ab_dir,) = (run_dir / "runs").glob(f"*-{kind}")
        data = json.loads((ab_dir / "ab.json").read_text())
        measured = [b for b in data["blocks"] if not b["warmup"]]
        assert len(measured) == 3 and all(len(b["samples"]["a"]["metrics"]["ttft_warm"]) == 4 for b in measured)
        assert all(all(b["samples"][arm]["checks"].values()) for b in measured for arm in ("a", "b")), kind
        assert all(b["same_answer"] for b in measured)
        assert "samples per arm" in (ab_dir / "ab.txt").read_text()
    # The planted line is gone again, and every server with its segments.
    assert ab_calibrate.MARK not in (ROOT / "LMCache" / ab_calibrate.TARGET).read_text()
    pids = server_pids(out)
    assert len(pids) >= 8 and not alive(pids) and not shm_segments(pids)


def test_dev_sh_takes_no_arguments() -> None:
    result = subprocess.run([str(ROOT / "scripts/dev.sh"), "stop"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0 and "usage: scripts/dev.sh" in result.stderr
