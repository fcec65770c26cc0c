"""Two nodes, one store, on the real servers (the short version of scripts/nodes.sh: 640-token
prompts; the recorded run uses 3000): cross-node hits through a real Redis both ways and after
node A's LMCache restarts empty, LMCache's coordinator seeing both nodes, and nothing left
behind (processes, /dev/shm segments, network namespaces)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from reproduce_vllm_lmcache.config import ROOT
from scripted_servers import alive, shm_segments

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]


def namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout if shutil.which("ip") else ""
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def test_two_nodes_share_kv_through_redis_both_ways_and_after_a_restart(tmp_path) -> None:
    if not shutil.which("redis-server"):
        pytest.skip("no redis-server: scripts/setup.sh installs it where it can (apt-get as root); else apt install redis-server")
    env = {**os.environ, "REPRO_RESULTS_DIR": str(tmp_path), "REPRO_NODES_PROMPT_TOKENS": "640", "REPRO_REDIS_DIR": str(tmp_path / "redis")}
    done = subprocess.run([str(ROOT / "scripts/nodes.sh")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1100)
    out = done.stdout + done.stderr
    (run_dir,) = (tmp_path / "runs").glob("*-nodes")
    outputs = "".join(p.read_text(errors="replace") for p in (run_dir / "logs").glob("*.out"))
    pids = {int(p) for p in re.findall(r"started, pid (\d+)", outputs)}
    assert done.returncode == 0, out[-6000:]
    data = json.loads((run_dir / "nodes.json").read_text())
    assert data["passed"], data["detail"]
    netns_here = sys.platform.startswith("linux") and os.geteuid() == 0 and shutil.which("ip")
    assert data["topology"]["mode"].startswith("network namespaces" if netns_here else "one loopback")
    steps = {s["step"]: s for s in data["steps"]}
    from_store = [s for s in steps.values() if s["source"].startswith("l2")]
    assert len(from_store) == 4  # A to B, B to A, and both prompts on A after its restart
    for s in from_store:
        assert s["hit_tokens"] == s["want_hit_tokens"] > 0 and s["l2_loaded_chunks"] == s["want_chunks"] and s["identical_to_cold"]
    assert [s["l1_objects_before"] for s in from_store if s["source"] == "l2, empty L1"] == [0, 0]
    assert all(s["l2_loaded_chunks"] == 0 for s in steps.values() if s["source"] == "l1")
    seen = json.dumps(data["coordinator"])
    assert "node-a" in seen and "node-b" in seen, "the coordinator never listed both nodes"
    assert data["store_after"]["objects"] >= 2 * from_store[0]["want_chunks"]
    assert pids and not alive(pids) and not shm_segments(pids), f"left behind: {alive(pids)}"
    made = set(re.findall(r"repro-\d+-\w+", data["topology"]["mode"]))
    assert len(made) == (3 if netns_here else 0) and not made & namespaces(), f"namespaces left: {made & namespaces()}"
    assert not list((tmp_path / "redis").glob("*/*")), "the run's Redis folder is removed afterwards"
