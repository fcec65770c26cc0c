"""Beyond one cache, on the real servers: L2 on a real Redis and on disk, L1 eviction under two
policies, two vLLM instances sharing one LMCache (`repro status` is tested in test_e2e.py)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from reproduce_vllm_lmcache.experiments.scenarios import full_chunks
from reproduce_vllm_lmcache.servers.settings import Settings
from scripted_servers import run_script as run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


def hit(tokens: int) -> int:
    """Tokens LMCache serves for a repeated prompt of ``tokens`` at the configured chunk size."""
    return full_chunks(tokens, Settings.from_env().chunk_size)


def test_l2_serves_the_warm_request_after_l1_is_cleared(tmp_path) -> None:
    """The short version: one L2 kind, Redis where a redis-server is installed (CI installs it),
    else disk; the recorded scripts/l2.sh run has both."""
    kind = "redis" if shutil.which("redis-server") else "disk"
    env = {
        **os.environ,
        "REPRO_RESULTS_DIR": str(tmp_path),
        "REPRO_L2_PROMPT_TOKENS": "1500",
        "REPRO_L2_KINDS": kind,
        "REPRO_L2_DISK_DIR": str(tmp_path / "l2"),
        "REPRO_REDIS_DIR": str(tmp_path / "redis"),
    }
    out = run("l2.sh", env)
    (run_dir,) = (tmp_path / "runs").glob("*-l2")
    data = json.loads((run_dir / f"l2-{kind}.json").read_text())
    assert data["passed"], data["detail"]
    cold, warm_l1, warm_l2 = data["rounds"]
    chunks = -(-hit(1500) // Settings.from_env().chunk_size)
    assert warm_l2["vllm_external_hit_tokens"] == hit(1500) and warm_l2["lmcache_l2_loaded_chunks"] >= chunks
    assert warm_l1["lmcache_l2_loaded_chunks"] == 0
    assert warm_l2["output_tokens"] == cold["output_tokens"]
    assert data["l2_contents"]["objects"] >= cold["lmcache_l1_write_chunks"] > 0
    assert warm_l2["ttft_s"] < cold["ttft_s"]
    assert f"PASS L2 {kind}" in out
    assert not list((tmp_path / "l2").glob("*/*")), "the run's disk L2 folder is removed afterwards"


def test_eviction_hits_follow_lru(tmp_path) -> None:
    """The short version (LRU only); the recorded scripts/eviction.sh run has LRU and noop."""
    # Prompts of 600 tokens (9 chunks) through an L1 scaled with them (0.13 GiB, as 0.25 GiB is to
    # the default 1100-token prompts): the same stream, half the prefill time.
    env = {
        **os.environ,
        "REPRO_RESULTS_DIR": str(tmp_path),
        "REPRO_EVICTION_POLICIES": "LRU",
        "REPRO_EVICTION_PROMPT_TOKENS": "600",
        "REPRO_EVICTION_L1_SIZE_GB": "0.13",
    }
    out = run("eviction.sh", env)
    (run_dir,) = (tmp_path / "runs").glob("*-eviction")
    lru = json.loads((run_dir / "eviction-LRU.json").read_text())
    assert lru["passed"], lru["detail"]
    assert all(r["hit_tokens"] == r["predicted_hit_tokens"] for r in lru["requests"])
    full = lru["chunks_per_prompt"]
    assert lru["resident_after_stream"]["P1"] == full and lru["resident_after_stream"]["P2"] == 0
    assert sum(r["evicted_chunks"] for r in lru["requests"]) > 0
    assert "PASS eviction LRU" in out and not (run_dir / "eviction-noop.json").exists()


def test_two_vllm_instances_share_one_lmcache_and_status_shows_it(tmp_path) -> None:
    env = {**os.environ, "REPRO_RESULTS_DIR": str(tmp_path), "REPRO_SHARED_PROMPT_TOKENS": "640", "REPRO_LOG_DIR": str(tmp_path / "logs")}
    out = run("shared.sh", env)
    (run_dir,) = (tmp_path / "runs").glob("*-shared")
    data = json.loads((run_dir / "shared.json").read_text())
    assert data["passed"], data["detail"]
    rounds = data["rounds"]
    assert [r["name"] for r in rounds] == ["cold@8000", "warm@8001", "cold@8001", "warm@8000"]
    for cold, warm in (rounds[:2], rounds[2:]):
        assert warm["vllm_external_hit_tokens"] == hit(640) and warm["output_tokens"] == cold["output_tokens"]
    assert "PASS two vLLM instances" in out
