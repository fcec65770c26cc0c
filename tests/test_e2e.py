"""End to end on the real default model, against one LMCache and one vLLM shared by every test
here that only reads them: terminals A (LMCache) and B (vLLM) started by their scripts as a user
would with `script 2>&1 | tee log`, terminal C's client, the LMCache server bench and `repro
status`. The last test stops both with Ctrl-C, which also kills the pipes' readers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from reproduce_vllm_lmcache.config import ROOT
from scripted_servers import ScriptedServer, alive, chunk_size, chunks_read, expected_hit, shm_segments

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]
REPRO = str(ROOT / ".venv/bin/repro")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("e2e")
    return {**os.environ, "REPRO_LOG_DIR": str(base / "logs"), "REPRO_RESULTS_DIR": str(base / "results")}


@pytest.fixture(scope="module")
def servers(env, tmp_path_factory):
    tees = tmp_path_factory.mktemp("tee")
    lmcache = ScriptedServer("start_lmcache.sh", env, tee=tees / "lmcache.log")
    started = [lmcache]
    try:
        lmcache.wait_for(r"lmcache: serving", 180)
        vllm = ScriptedServer("start_vllm.sh", env, tee=tees / "vllm.log")
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


def rounds_of(env: dict[str, str], length: int, label: str) -> dict[str, object]:
    result = run([str(ROOT / "scripts/e2e.sh"), "--label", label], {**env, "REPRO_PROMPT_TOKENS": str(length)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads((ROOT / env["REPRO_RESULTS_DIR"] / "latest.json").read_text())
    return data


def check_cold_warm(data: dict, length: int) -> tuple[dict, dict]:
    rounds = {(r["prompt"], r["name"]): r for r in data["rounds"]}
    assert set(rounds) == {(f"p{length}", "cold"), (f"p{length}", "warm")}
    cold, warm = rounds[(f"p{length}", "cold")], rounds[(f"p{length}", "warm")]
    assert cold["prompt_tokens"] == warm["prompt_tokens"] == length
    assert cold["lmcache_l1_write_chunks"] == length // chunk_size(), cold
    assert cold["lmcache_l1_read_chunks"] == 0 and cold["vllm_external_hit_tokens"] == 0, cold
    assert warm["lmcache_l1_read_chunks"] == chunks_read(length), warm
    assert warm["vllm_external_hit_tokens"] == expected_hit(length), warm
    assert warm["vllm_external_query_tokens"] == length, warm
    assert cold["output_text"].strip() and cold["output_tokens"]
    if data["config"]["dtype"] == "float32":
        assert warm["output_tokens"] == cold["output_tokens"], (cold["output_text"], warm["output_text"])
    for verdict in data["verdicts"]:
        assert verdict["stored_on_cold"] and verdict["hit_on_warm"], verdict
        assert verdict["output_identical"] or verdict["diverged_at_tie"], verdict
    return cold, warm


@pytest.mark.quick
def test_quick_cold_then_warm_round(servers, env) -> None:
    """The quick tier's one real round: stored on cold, hit on warm, identical output."""
    data = rounds_of(env, 640, "quick")
    check_cold_warm(data, 640)
    config = data["config"]
    for key in ("vllm_version", "lmcache_version", "model", "dtype", "cpu_model", "cpu_cores", "knobs", "vllm_layout"):
        assert config[key], key
    assert "REPRO_VLLM_EXTRA_ARGS" in config["knobs"] and "vllm_extra_args" in config


def test_long_prompt_warm_is_faster_than_cold(servers, env) -> None:
    cold, warm = check_cold_warm(rounds_of(env, 3000, "test"), 3000)
    assert warm["ttft_s"] < cold["ttft_s"], (cold["ttft_s"], warm["ttft_s"])


def test_first_request_after_the_start_costs_no_more_than_the_next(servers, env) -> None:
    """The start script's warm-up did the one-off work: two fresh cold requests of one length
    take about the same time (generous margin: timings only as ratios)."""
    result = run(
        [
            sys.executable,
            "-c",
            "from reproduce_vllm_lmcache.experiments import startup; import json; "
            "print(json.dumps(startup.first_requests(640, 'first-check')))",
        ],
        env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    times = json.loads(result.stdout.strip().splitlines()[-1])
    assert times["first_ttft_s"] < 2.5 * times["second_ttft_s"], times


def test_server_bench_passes_every_checksum(servers, env) -> None:
    result = run([str(ROOT / "scripts/server_bench.sh")], env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "using the LMCache server" in result.stdout
    (path,) = (ROOT / env["REPRO_RESULTS_DIR"] / "runs").glob("*-server-bench-lmcache_driven/server_bench.json")
    res = json.loads(path.read_text())["metrics"]["results"]
    assert res["pass_rate"] == 100.0 and res["checksum_fail"] == 0 and res["total_requests"] >= 3


def test_status_answers_did_the_cache_help_from_the_servers(servers, env) -> None:
    e2e = run([REPRO, "e2e", "--label", "status"], {**env, "REPRO_PROMPT_TOKENS": "600"})
    assert e2e.returncode == 0, e2e.stdout[-3000:] + e2e.stderr[-3000:]
    shown = run([REPRO, "status"], env)
    snap = json.loads(run([REPRO, "status", "--json"], env).stdout)
    assert shown.returncode == 0, shown.stderr
    chunks = chunks_read(600)
    # The servers are shared with the tests above: their counters include earlier rounds.
    assert snap["vllm"][0]["prompt_tokens_by_source"]["external_kv_transfer"] >= expected_hit(600)
    assert snap["lmcache"]["counters"]["L1 chunks read"] >= chunks
    assert snap["lmcache"]["l1"]["total_object_count"] >= chunks
    assert "from LMCache" in shown.stdout and "the cache helped" in shown.stdout
    assert f"p600 warm: 600 prompt tokens, {expected_hit(600)} hit" in shown.stdout


def test_status_says_when_nothing_answers(env) -> None:
    down = run([REPRO, "status"], {**env, "REPRO_VLLM_PORT": "18998", "REPRO_LMCACHE_HTTP_PORT": "18997"})
    assert down.returncode == 0 and "not answering" in down.stdout


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
        ("REPRO_VLLM_LAYOUT", "sideways", "REPRO_VLLM_LAYOUT='sideways'"),
        ("REPRO_VLLM_EXTRA_ARGS", "--unclosed 'quote", "REPRO_VLLM_EXTRA_ARGS="),
    ],
)
def test_bad_knob_stops_vllm_script_before_starting(servers, env, knob, value, message) -> None:
    result = run([str(ROOT / "scripts/start_vllm.sh")], {**env, knob: value}, timeout=60)
    assert result.returncode != 0
    assert message in result.stderr
    assert "started, pid" not in result.stdout


def test_extra_args_the_server_rejects_show_its_error_and_name_the_knob(servers, env) -> None:
    bad = {
        **env,
        "REPRO_VLLM_PORT": "8011",
        "REPRO_VLLM_EXTRA_ARGS": "--no-such-vllm-flag 1",
        "REPRO_LOG_DIR": env["REPRO_LOG_DIR"] + "-bad-extra-args",
    }
    result = run([str(ROOT / "scripts/start_vllm.sh")], bad, timeout=300)
    assert result.returncode != 0
    assert "unrecognized arguments: --no-such-vllm-flag 1" in result.stderr, result.stderr[-3000:]
    assert "REPRO_VLLM_EXTRA_ARGS='--no-such-vllm-flag 1' was appended to the vllm command line" in result.stderr


def test_ctrl_c_through_a_pipe_leaves_no_process_and_no_shared_memory(servers) -> None:
    """`start_*.sh 2>&1 | tee log`, then Ctrl-C: tee dies first, the scripts still clean up."""
    pids = servers["vllm"].group | servers["lmcache"].group
    assert len(servers["vllm"].group) >= 2, "expected the vLLM API server and its engine process"
    segments = shm_segments(pids)
    assert segments or sys.platform != "linux", "expected the vLLM worker's LMCache segment"
    for name in ("vllm", "lmcache"):
        assert servers[name].interrupt() in (0, 130), servers[name].output[-3000:]
    assert not alive(pids), f"left running: {alive(pids)}"
    assert not shm_segments(pids), shm_segments(pids)
