"""cache_salt isolation on the real servers (scripts/tenants.sh), short version: one LMCache
server with a disk L2 and one vLLM, the L1 path then the L2 path. The recorded run has the
apc and two-instance setups too (docs/guards-and-faults.md)."""

from __future__ import annotations

import json
import os

import pytest

from scripted_servers import run_script

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def test_salted_prompt_hits_only_its_own_tenant(tmp_path) -> None:
    env = {
        **os.environ,
        "REPRO_RESULTS_DIR": str(tmp_path),
        "REPRO_TENANTS_SETUPS": "lmcache",
        "REPRO_TENANTS_PROMPT_TOKENS": "600",
        "REPRO_L2_DISK_DIR": str(tmp_path / "l2"),
    }
    run_script("tenants.sh", env)
    (run_dir,) = (tmp_path / "runs").glob("*-tenants")
    for label in ("lmcache", "l2"):
        data = json.loads((run_dir / f"tenants-{label}.json").read_text())
        assert data["passed"], data["checks"]
        cold, again, other, plain, plain_again = data["rounds"]
        assert again["vllm_external_hit_tokens"] > 0 and again["lmcache_lookup_hits_by_salt"]["tenant-a"] > 0
        for r in (other, plain):
            assert r["vllm_external_hit_tokens"] == r["vllm_local_hit_tokens"] == 0
            assert not any(r["lmcache_lookup_hits_by_salt"].values())
        assert plain_again["lmcache_lookup_hits_by_salt"][""] > 0
        assert again["output_tokens"] == cold["output_tokens"] == other["output_tokens"]
    l2 = json.loads((run_dir / "tenants-l2.json").read_text())
    assert l2["rounds"][1]["lmcache_l2_loaded_chunks"] > 0
