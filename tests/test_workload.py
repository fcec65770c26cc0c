"""The workload sweep's short version on the real servers: vLLM's prefix cache (APC) against
LMCache, a working set of 2x a small vLLM KV capacity, `vllm bench serve` and
`lmcache bench engine` long-doc-qa. The full sweep is scripts/workload.sh with its defaults."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from reproduce_vllm_lmcache.config import ROOT
from scripted_servers import alive, server_pids, shm_segments

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]


def test_workload_hits_by_source_and_identical_answers(tmp_path) -> None:
    env = {
        **os.environ,
        "REPRO_RESULTS_DIR": str(tmp_path),
        "REPRO_WORKLOAD_CAPACITY_TOKENS": "1024",
        "REPRO_WORKLOAD_PREFIX_TOKENS": "256",
        "REPRO_WORKLOAD_RATIOS": "2",  # above capacity; below it, hits by source: tests/test_matrix.py
        "REPRO_WORKLOAD_CONCURRENCY": "1",
        "REPRO_WORKLOAD_CONFIGURATIONS": "apc,lmcache",
        "REPRO_WORKLOAD_LDQA_RATIOS": "2",
        "REPRO_WORKLOAD_OUTPUT_TOKENS": "4",
        "REPRO_WORKLOAD_PASSES": "1",  # the intervals of several passes are unit-tested (test_workload_logic.py)
    }
    result = subprocess.run([str(ROOT / "scripts" / "workload.sh")], cwd=ROOT, env=env, capture_output=True, text=True)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-6000:]
    pids = server_pids(out)
    assert pids and not alive(pids) and not shm_segments(pids), f"left behind: {alive(pids)}"
    (run_dir,) = (tmp_path / "runs").glob("*-workload")
    data = json.loads((run_dir / "workload.json").read_text())
    assert data["passed"], [c for c in data["checks"] if not c["passed"]]
    rows = {(r["configuration"], r["ratio"]): r for r in data["rows"]}
    assert set(rows) == {("apc", 2.0), ("lmcache", 2.0)}
    big_apc, big_lmc = rows[("apc", 2.0)], rows[("lmcache", 2.0)]
    # Hits by source: APC only locally, LMCache only externally, every repeated prefix served.
    assert big_apc["hit_external"] == 0 and big_apc["hit_local"] > 0
    assert big_lmc["hit_local"] == 0 and big_lmc["hit_external"] >= 0.9 * big_lmc["documents"] * 2 * 256
    answers = big_lmc["answers"]
    assert answers["compared"] == big_lmc["requests"] == big_apc["requests"] and answers["identical"] == big_lmc["requests"]
    # Above vLLM's capacity APC loses prefixes that LMCache keeps: more hits, lower median TTFT.
    assert big_lmc["hit_external"] > 1.5 * big_apc["hit_local"]
    assert big_lmc["ttft_p50_s"] < 0.7 * big_apc["ttft_p50_s"]
    assert big_lmc["ldqa"]["hit_external"] > 0 and big_apc["ldqa"]["hit_external"] == 0
    assert big_lmc["ldqa"]["failed_requests"] == 0 and big_apc["ldqa"]["failed_requests"] == 0
    for name in ("workload-hit-rate.png", "workload-ttft.png", "workload-throughput.png", "report.html"):
        assert (run_dir / name).stat().st_size > 1000, name


def test_workload_refuses_bad_knobs_before_any_server_starts(tmp_path) -> None:
    env = {**os.environ, "REPRO_RESULTS_DIR": str(tmp_path), "REPRO_WORKLOAD_CAPACITY_TOKENS": "512"}
    result = subprocess.run([str(ROOT / "scripts" / "workload.sh")], cwd=ROOT, env=env, capture_output=True, text=True)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "REPRO_WORKLOAD_CAPACITY_TOKENS=512" in out and "REPRO_WORKLOAD_MAX_MODEL_LEN=1024" in out
    assert "started, pid" not in out and not (tmp_path / "runs").exists()
