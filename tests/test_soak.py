"""scripts/soak.sh, the short version: two minutes of mixed `lmcache bench engine` load through a
small L1, the LMCache server killed and restarted half-way, a real Prometheus scraping both
servers; the verdicts of its soak.json (docs/soak.md). The recorded run is the default 20 minutes."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from reproduce_vllm_lmcache.config import ROOT
from scripted_servers import alive, server_pids, shm_segments

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SHORT = {
    "REPRO_SOAK_MINUTES": "2",
    "REPRO_SOAK_WARMUP_S": "30",
    "REPRO_SOAK_RECOVERY_S": "20",
    "REPRO_SOAK_CHAT_ROUND_S": "60",
    "REPRO_SOAK_L1_SIZE_GB": "0.1",
    # Three queries a document: a document round cut by the restart still has a query after the
    # one that stores its KV again (with two, a slow machine's last round after the restart could
    # not hit at all: 0.0 after the restart in one CI run). Three documents: short rounds, so
    # rounds also start after the restart.
    "REPRO_SOAK_DOCS": "3",
    "REPRO_SOAK_DOC_TOKENS": "400",
    "REPRO_SOAK_DOC_QUERIES": "3",
    "REPRO_SOAK_SAMPLE_S": "3",
    "REPRO_PROMETHEUS_SCRAPE_S": "3",
    "REPRO_SOAK_SAMPLE_PROMPTS": "2",
    "REPRO_SOAK_SAMPLE_TOKENS": "256",
    # Its hit rates come from about 30 s of requests on each side of the restart (0.58 before,
    # 0.48 after in one run here): a lower bar than the recorded run's 0.8; a connector that
    # never comes back scores about 0.
    "REPRO_SOAK_HIT_RECOVERY": "0.7",
}


def test_short_soak_survives_a_restart_without_growth_and_same_answers(tmp_path) -> None:
    env = {**os.environ, "REPRO_RESULTS_DIR": str(tmp_path), **SHORT}
    result = subprocess.run([str(ROOT / "scripts/soak.sh")], cwd=ROOT, env=env, capture_output=True, text=True)
    out = result.stdout + result.stderr
    (run_dir,) = (tmp_path / "runs").glob("*-soak")
    data = json.loads((run_dir / "soak.json").read_text())
    failed = [f"{name}: {v['detail']}" for name, v in data["verdicts"].items() if not v["passed"]]
    assert result.returncode == 0 and data["passed"], "\n".join(failed) + "\n" + out[-4000:]
    # Both workloads ran, several rounds; what failed did so while the server was down.
    for workload in ("chat", "docs"):
        assert data["requests"]["by_workload"][workload]["done"] >= 5, data["requests"]
    assert data["requests"]["failed_outside_restart_window"] == 0
    assert data["restart"]["down_s"] > 0 and data["restart"]["killed_at"] < data["restart"]["ready_at"]
    # The sampler followed both LMCache servers (the killed one and its successor) and vLLM.
    leaders = [line.split() for line in (run_dir / "server-pids").read_text().splitlines() if line.strip()]
    lmcache_leaders = {pid for role, pid in leaders if role == "lmcache"}
    followed = {name.split()[-1] for name in data["processes"]}
    assert len(lmcache_leaders) == 2 and lmcache_leaders <= followed, (leaders, list(data["processes"]))
    assert any(name.startswith("vllm ") for name in data["processes"]), list(data["processes"])
    # Prometheus scraped both servers: hit rates and L1 usage are there.
    series = json.loads((run_dir / "prometheus-series.json").read_text())
    for name in ("vllm_hit_rate", "lmcache_hit_rate", "l1_used_bytes", "ttft_p90_s"):
        assert series[name]["series"] and series[name]["series"][0]["values"], name
    assert {s["labels"]["job"] for s in series["up"]["series"]} == {"vllm", "lmcache"}
    # Answers after the load: hits, and the same tokens as plain vLLM's.
    assert data["verdicts"]["answers token-identical to a no-cache baseline"]["token_identical"] == 2
    # The cache simulator's curve, with the observed hit rate on it.
    sim = data["simulator"]
    assert len(sim["curve"]) >= 10 and sim["observed_vllm_hit_rate"] is not None
    for png in ("soak-timeline.png", "soak-simulator.png"):
        assert (run_dir / png).read_bytes()[:4] == b"\x89PNG"
    assert (run_dir / "report.html").is_file() and not (run_dir / "prometheus/data").exists()
    pids = server_pids(out)
    assert len(pids) >= 6 and not alive(pids) and not shm_segments(pids), f"left behind: {alive(pids)}"
