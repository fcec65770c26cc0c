"""scripts/bench.sh and scripts/engine_bench.sh on the real servers, each small enough for CI
(scripts/dev.sh, an A/B, is tests/test_ab.py's)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from reproduce_vllm_lmcache.config import ROOT
from reproduce_vllm_lmcache.experiments.scenarios import full_chunks
from scripted_servers import alive, expected_hit, server_pids, shm_segments

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


def run(script: str, env: dict[str, str], *args: str) -> str:
    result = subprocess.run([str(ROOT / "scripts" / script), *args], cwd=ROOT, env=env, capture_output=True, text=True)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-5000:]
    return out


def test_bench_sweep_records_points_floors_and_plots(tmp_path) -> None:
    env = {
        **os.environ,
        "REPRO_RESULTS_DIR": str(tmp_path),
        "REPRO_BENCH_PROMPT_TOKENS": "640",  # one length: the recorded sweep has the rest
        "REPRO_BENCH_CHUNK_SIZES": "256",
        "REPRO_BENCH_REPEATS": "2",
        "REPRO_BENCH_MAX_MODEL_LEN": "4096",
    }
    out = run("bench.sh", env)
    (run_dir,) = (tmp_path / "runs").glob("*-bench")
    data = json.loads((run_dir / "bench.json").read_text())
    points = {(p["cache"], p["chunk_size"], p["prompt_tokens"]): p for p in data["points"]}
    length = 640
    assert set(points) == {(c, k, length) for c, k in (("none", 0), ("apc", 0), ("lmcache", 256))}
    apc = points[("apc", 0, length)]  # vLLM's own prefix cache: whole 64-token blocks, no LMCache
    assert apc["warm_hit_tokens"] > 0 and apc["warm_read_chunks"] == 0 and apc["identical"]
    p = points[("lmcache", 256, length)]
    assert p["apc_warm_ttft_s"] == apc["warm_ttft_s"] and p["warm_over_apc"] > 0
    assert p["repeats"] == 2 and len(p["warm_ttft_samples"]) == 2
    assert p["warm_hit_tokens"] == full_chunks(length, 256) and p["identical"]
    # The floor is a model (its tail term uses the cold request's average prefill rate): a warm
    # request may reach it; far below it would mean a broken floor.
    assert 0 < p["floor_s"] < 1.25 * p["warm_ttft_s"] and p["warm_ttft_s"] < p["cold_ttft_s"]
    assert p["breakdown"]["lmcache_retrieve_s"] > 0 and p["breakdown"]["vllm_prefill_s"] > 0
    assert p["cold_vs_no_connector"]["verdict"] in ("faster", "slower", "no change", "too few samples")
    for c in data["configurations"]:
        assert c["vllm_ready_s"] > 0 and c["machine"]["copy_bytes_per_s"] > 1e8
    for png in ("bench-ttft.png", "bench-ratios.png"):
        assert (run_dir / png).read_bytes()[:4] == b"\x89PNG"
    assert "| 640 | 256 |" in out
    pids = server_pids(out)
    assert len(pids) == 4 and not alive(pids) and not shm_segments(pids)


def test_engine_bench_runs_lmcache_workloads_with_and_without_lmcache(tmp_path) -> None:
    env = {
        **os.environ,
        "REPRO_RESULTS_DIR": str(tmp_path),
        "REPRO_ENGINE_BENCH_DOC_TOKENS": "600",
        "REPRO_ENGINE_BENCH_DOCS": "1",
        "REPRO_ENGINE_BENCH_QUERIES": "2",
        "REPRO_ENGINE_BENCH_CHAT_SECONDS": "5",
        "REPRO_ENGINE_BENCH_CONFIGURATIONS": "lmcache",  # the short version; the recorded run has both
    }
    out = run("engine_bench.sh", env)
    (run_dir,) = (tmp_path / "runs").glob("*-engine-bench")
    summaries = json.loads((run_dir / "engine_bench.json").read_text())["summaries"]
    assert set(summaries) == {f"lmcache-{w}" for w in ("long-doc-qa", "multi-round-chat")}
    for s in summaries.values():
        assert s["successful_requests"] > 0 and s["failed_requests"] == 0
    pids = server_pids(out)
    assert len(pids) == 2 and not alive(pids) and not shm_segments(pids)


def test_profile_samples_both_servers_during_warm_requests(tmp_path) -> None:
    env = {**os.environ, "REPRO_RESULTS_DIR": str(tmp_path), "REPRO_PROFILE_TOKENS": "640", "REPRO_PROFILE_REQUESTS": "1"}
    out = run("profile.sh", env)
    (run_dir,) = (tmp_path / "runs").glob("*-profile")
    report = (run_dir / "profile.txt").read_text()
    for server in ("lmcache", "vllm"):
        raw = (run_dir / f"{server}.pyspy.txt").read_text().splitlines()
        assert raw and all(line.rsplit(" ", 1)[1].isdigit() for line in raw), server
        assert f"=== {server}" in report
    assert report.count("on-CPU samples") == 2 and "by function, inclusive" in report
    warm = json.loads((run_dir / "warm.json").read_text())["rounds"]
    assert [r["name"] for r in warm] == ["warm"] and warm[0]["vllm_external_hit_tokens"] == expected_hit(640)
    pids = server_pids(out)
    assert len(pids) == 2 and not alive(pids) and not shm_segments(pids)
