"""End to end on the real default model: terminals A (LMCache) and B (vLLM) started by their
scripts, terminal C's client, and the LMCache server bench."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from scripted_servers import ScriptedServer, alive, chunk_size, chunks_read, expected_hit, shm_segments

from reproduce_vllm_lmcache.config import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("e2e")
    return {
        **os.environ,
        "REPRO_LOG_DIR": str(base / "logs"),
        "REPRO_RESULTS_DIR": str(base / "results"),
        "REPRO_PROMPT_TOKENS": "640,3000",
    }


@pytest.fixture(scope="module")
def servers(env):
    lmcache = ScriptedServer("start_lmcache.sh", env)
    started = [lmcache]
    try:
        lmcache.wait_for(r"lmcache: serving", 180)
        vllm = ScriptedServer("start_vllm.sh", env)
        started.append(vllm)
        vllm.wait_for(r"vllm: serving", 900)
        for server in started:
            server.remember_group()
        yield {"lmcache": lmcache, "vllm": vllm}
    finally:
        for server in reversed(started):
            server.interrupt()


def run(cmd: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_cold_then_warm_is_stored_hit_and_identical(servers, env) -> None:
    result = run([str(ROOT / "scripts/e2e.sh"), "--label", "test"], env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads((ROOT / env["REPRO_RESULTS_DIR"] / "latest.json").read_text())
    config = data["config"]
    for key in ("vllm_version", "lmcache_version", "model", "dtype", "cpu_model", "cpu_cores", "knobs"):
        assert config[key], key
    rounds = {(r["prompt"], r["name"]): r for r in data["rounds"]}
    assert set(rounds) == {("p640", "cold"), ("p640", "warm"), ("p3000", "cold"), ("p3000", "warm")}
    for length in (640, 3000):
        cold, warm = rounds[(f"p{length}", "cold")], rounds[(f"p{length}", "warm")]
        assert cold["prompt_tokens"] == warm["prompt_tokens"] == length
        assert cold["lmcache_l1_write_chunks"] == length // chunk_size(), cold
        assert cold["lmcache_l1_read_chunks"] == 0 and cold["vllm_external_hit_tokens"] == 0, cold
        assert warm["lmcache_l1_read_chunks"] == chunks_read(length), warm
        assert warm["vllm_external_hit_tokens"] == expected_hit(length), warm
        assert warm["vllm_external_query_tokens"] == length, warm
        assert cold["output_text"].strip() and cold["output_tokens"]
        if config["dtype"] == "float32":
            assert warm["output_tokens"] == cold["output_tokens"], (cold["output_text"], warm["output_text"])
    for verdict in data["verdicts"]:
        assert verdict["stored_on_cold"] and verdict["hit_on_warm"], verdict
        assert verdict["output_identical"] or verdict["diverged_at_tie"], verdict
    long_cold, long_warm = rounds[("p3000", "cold")], rounds[("p3000", "warm")]
    assert long_warm["ttft_s"] < long_cold["ttft_s"], (long_cold["ttft_s"], long_warm["ttft_s"])


def test_server_bench_passes_every_checksum(servers, env) -> None:
    result = run([str(ROOT / "scripts/server_bench.sh")], env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "using the LMCache server" in result.stdout
    (path,) = (ROOT / env["REPRO_RESULTS_DIR"] / "runs").glob("*-server-bench-lmcache_driven/server_bench.json")
    res = json.loads(path.read_text())["metrics"]["results"]
    assert res["pass_rate"] == 100.0 and res["checksum_fail"] == 0 and res["total_requests"] >= 3


def test_taken_port_is_refused_naming_the_holder(servers, env) -> None:
    result = run([str(ROOT / "scripts/start_lmcache.sh")], env, timeout=60)
    assert result.returncode != 0
    pid = servers["lmcache"].server_pid
    assert f"port 5555 (REPRO_LMCACHE_PORT) on 127.0.0.1 is taken by pid {pid}" in result.stderr, result.stderr


def test_client_names_the_server_that_is_down(servers, env) -> None:
    result = run([str(ROOT / "scripts/e2e.sh")], {**env, "REPRO_VLLM_PORT": "18999"}, timeout=60)
    assert result.returncode == 2
    assert "the vLLM server is not answering at http://127.0.0.1:18999" in result.stderr
    assert "scripts/start_vllm.sh" in result.stderr


@pytest.mark.parametrize(
    "knob,value,message",
    [
        ("REPRO_DTYPE", "fp8", "REPRO_DTYPE='fp8'"),
        ("REPRO_VLLM_PORT", "eighty", "REPRO_VLLM_PORT='eighty': expected a whole number"),
        ("REPRO_PROMPT_TOKENS", "9000", "does not fit REPRO_MAX_MODEL_LEN"),
        ("REPRO_MODEL", "models/missing", "no such model directory"),
    ],
)
def test_bad_knob_stops_vllm_script_before_starting(servers, env, knob, value, message) -> None:
    result = run([str(ROOT / "scripts/start_vllm.sh")], {**env, knob: value}, timeout=60)
    assert result.returncode != 0
    assert message in result.stderr
    assert "started, pid" not in result.stdout


def test_ctrl_c_leaves_no_process_and_no_shared_memory(servers) -> None:
    pids = servers["vllm"].group | servers["lmcache"].group
    assert len(servers["vllm"].group) >= 2, "expected the vLLM API server and its engine process"
    for name in ("vllm", "lmcache"):
        assert servers[name].interrupt() in (0, 130), servers[name].output[-3000:]
    assert not alive(pids), f"left running: {alive(pids)}"
    assert not shm_segments(pids), shm_segments(pids)
    assert "removed leftover shared memory" in servers["vllm"].output or sys.platform != "linux"
