"""scripts/matrix.sh end to end (short version): baseline, LMCache in both transfer modes, APC + LMCache, scenarios."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from reproduce_vllm_lmcache.config import ROOT
from scripted_servers import expected_hit

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3000)]


def test_matrix_attributes_every_warm_hit_and_keeps_answers(tmp_path) -> None:
    # The short version: both transfer modes, LMCache with and without APC; scripts/matrix.sh's recorded run has
    # all seven configurations (cross-instance: tests/test_tiers.py, two vLLMs on one LMCache).
    env = {
        **os.environ,
        "REPRO_RESULTS_DIR": str(tmp_path),
        "REPRO_PROMPT_TOKENS": "640",
        "REPRO_MATRIX_CONFIGURATIONS": "none,lmcache,both,lmcache-engine-shm",
    }
    result = subprocess.run([str(ROOT / "scripts/matrix.sh")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    (path,) = tmp_path.glob("runs/*-matrix/matrix.json")
    data = json.loads(path.read_text())
    rounds = {(r["configuration"], r["prompt"], r["name"]): r for r in data["rounds"]}
    for prompt, length in (("p640", 640),):
        full = expected_hit(length)
        assert rounds[("none", prompt, "warm")]["vllm_local_hit_tokens"] == 0
        assert rounds[("none", prompt, "warm")]["vllm_external_hit_tokens"] == 0
        # Both caches: vLLM's own answers first (whole blocks short of the last token), LMCache
        # the whole chunks beyond it. APC alone: tests/test_workload.py.
        both = rounds[("both", prompt, "warm")]
        assert both["vllm_local_hit_tokens"] > 0 and both["vllm_local_hit_tokens"] + both["vllm_external_hit_tokens"] == full, both
        assert rounds[("lmcache", prompt, "warm")]["vllm_external_hit_tokens"] == full
        assert rounds[("lmcache", prompt, "warm")]["vllm_local_hit_tokens"] == 0
        assert rounds[("lmcache-engine-shm", prompt, "warm")]["vllm_external_hit_tokens"] == full
        assert ("lmcache-restarted", prompt, "restart") not in rounds, "only the configurations asked for run"
    for v in data["verdicts"]:
        assert v["identical_to_baseline"] or v["diverged_at_tie"], v
        assert v.get("source_ok", True), v
    assert {s["scenario"]: s["passed"] for s in data["scenarios"]} == {
        "negative": True,
        "partial prefix": True,
        "multi-turn chat": True,
        "prefix cache covers the prompt": True,
        "prefix cache covers part of the prompt": True,
    }
    # With both caches and the workspace's patches: no lookup for what vLLM's cache holds; a
    # partial cover looks up, and its unread locks are not counted as reads.
    (covered,) = [s for s in data["scenarios"] if s["scenario"] == "prefix cache covers the prompt"]
    warm = covered["rounds"][1]
    assert (warm["lmcache_lookups"], warm["lmcache_l1_read_chunks"], warm["lmcache_l1_released_chunks"]) == (0, 0, 0), warm
    (partial,) = [s for s in data["scenarios"] if s["scenario"] == "prefix cache covers part of the prompt"]
    r = partial["rounds"][0]
    assert r["lmcache_lookups"] == 1 and r["lmcache_l1_read_chunks"] == 0 and r["lmcache_l1_released_chunks"] > 0, r
    modes = {t["configuration"]: (t["transfer_mode"], t["data_path"]) for t in data["transfer_modes"]}
    assert modes["lmcache"][0] == "lmcache_driven"
    assert modes["lmcache-engine-shm"] == ("engine_driven", "shm")
