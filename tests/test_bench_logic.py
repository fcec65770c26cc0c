"""Pure logic of bench, floor, compare and the noise verdict."""

import json
import os

import pytest

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.experiments import bench
from reproduce_vllm_lmcache.report import bench as bench_report
from reproduce_vllm_lmcache.report import compare, floor, stats
from reproduce_vllm_lmcache.servers import commands
from reproduce_vllm_lmcache.servers.settings import KnobError, Settings
from reproduce_vllm_lmcache.workspace import checkouts

SMOLLM2 = {"num_hidden_layers": 30, "num_key_value_heads": 3, "num_attention_heads": 9, "hidden_size": 576, "head_dim": 64}


def test_kv_bytes_per_token_counts_keys_and_values_of_every_layer() -> None:
    assert floor.kv_bytes_per_token(SMOLLM2, "float32") == 2 * 30 * 3 * 64 * 4 == 46080
    assert floor.kv_bytes_per_token(SMOLLM2, "bfloat16") == 23040
    no_head_dim = {k: v for k, v in SMOLLM2.items() if k != "head_dim"}
    assert floor.kv_bytes_per_token(no_head_dim, "float32") == 46080


def test_floor_adds_one_token_step_kv_copy_and_recomputed_tail() -> None:
    m = floor.Machine(kv_bytes_per_token=1000, copy_bytes_per_s=1e9, one_token_ttft_s=0.05, http_rtt_s=0.001)
    parts = floor.floor(m, prompt_tokens=3000, hit_tokens=2816, cold_ttft_s=6.0)
    assert parts["floor_kv_copy_s"] == pytest.approx(2816 * 1000 / 1e9, abs=1e-4)
    assert parts["tail_tokens"] == 184
    assert parts["floor_tail_s"] == pytest.approx(184 / 500, abs=1e-4)
    assert parts["floor_s"] == pytest.approx(0.05 + 0.0028 + 0.368, abs=1e-3)


def test_lmcache_log_times_sum_the_requests_lines() -> None:
    text = (
        "[x] LMCache INFO: Prefetch request completed (L1+L2): 11/11 retained keys (11 L1, 0 L2) in 3.4 ms (id=1)\n"
        "[x] LMCache INFO: Retrieved 2816 tokens in 0.097 seconds (lmcache_driven_transfer.py:1100)\n"
        "[x] LMCache INFO: Stored 2048 tokens in 0.209 seconds\n[x] LMCache INFO: Stored 768 tokens in 0.079 seconds\n"
    )
    assert bench.lmcache_log_times(text) == {"lmcache_retrieve_s": 0.097, "lmcache_prefetch_s": 0.0034, "lmcache_store_s": 0.288}
    assert bench.lmcache_log_times("") == {"lmcache_retrieve_s": 0.0, "lmcache_prefetch_s": 0.0, "lmcache_store_s": 0.0}


def test_log_tail_returns_only_what_was_appended(tmp_path) -> None:
    log = tmp_path / "lmcache.log"
    log.write_text("old line\n")
    tail = bench.LogTail(log)
    with log.open("a") as f:
        f.write("new line\n")
    assert tail.new_text() == "new line\n"
    assert tail.new_text() == ""
    assert bench.LogTail(None).new_text() == ""


@pytest.mark.parametrize(
    "a,b,word",
    [
        ([1.0, 1.02, 0.98, 1.01], [0.5, 0.51, 0.49, 0.5], "faster"),
        ([1.0, 1.02, 0.98, 1.01], [1.5, 1.52, 1.48, 1.5], "slower"),
        ([1.0, 1.5, 0.7, 1.2], [0.9, 1.4, 0.8, 1.1], "no change"),  # A's own spread covers B
    ],
)
def test_unpaired_verdict(a, b, word) -> None:
    assert stats.effect("x", a, b, 0.01, paired=False).verdict == word


def test_summary_and_spread() -> None:
    assert stats.summary([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "spread": 1.0}
    assert stats.spread([5.0]) == 0.0


def run_json(ttfts: dict[str, list[float]], **config_extra) -> dict:
    rounds = [{"prompt": k.split()[0], "name": k.split()[1], "ttft_s": t} for k, ts in ttfts.items() for t in ts]
    return {"config": {"dtype": "float32", "prompt_seed": "x", **config_extra}, "rounds": rounds}


def test_compare_runs_per_round_and_names_config_differences() -> None:
    a = run_json({"p640 cold": [1.0, 1.1, 0.9], "p640 warm": [0.3, 0.31, 0.29]}, checkouts={"LMCache": {"edits_sha256": ""}})
    b = run_json({"p640 cold": [1.0, 1.05, 0.95], "p640 warm": [0.6, 0.61, 0.59]}, checkouts={"LMCache": {"edits_sha256": "ab"}})
    b["config"]["prompt_seed"] = "y"  # differs in every run, never reported
    result = compare.compare(a, b)
    rows = {r["row"]: r for r in result["rows"]}
    assert rows["p640 cold"]["verdict"] == "no change"
    assert rows["p640 warm"]["verdict"] == "slower" and rows["p640 warm"]["ratio"] == pytest.approx(2.0, abs=0.01)
    assert rows["p640 warm"]["low"] > 1.5 and result["machine_differences"] == []
    assert result["config_differences"] == ["checkouts.LMCache.edits_sha256: '' -> 'ab'"]


def test_compare_refuses_runs_of_different_machines(tmp_path) -> None:
    a = run_json({"p640 warm": [0.3, 0.31, 0.29]}, cpu_model="X", cpu_cores=2)
    b = run_json({"p640 warm": [0.6, 0.61, 0.59]}, cpu_model="Y", cpu_cores=2)
    result = compare.compare(a, b)
    assert result["rows"][0]["verdict"] == "not comparable"
    text = compare.render(result, tmp_path / "a", tmp_path / "b")
    assert "NOT COMPARABLE" in text and "cpu_model: 'X' -> 'Y'" in text and "slower" not in text


def test_compare_bench_points_by_length_and_chunk() -> None:
    point = {"prompt_tokens": 3000, "chunk_size": 256, "cold_ttft_samples": [6.0, 6.1], "warm_ttft_samples": [0.6, 0.62]}
    assert compare.samples({"points": [point]}) == {"p3000 chunk 256 cold": [6.0, 6.1], "p3000 chunk 256 warm": [0.6, 0.62]}


def test_latest_two_picks_the_newest_of_a_label(tmp_path) -> None:
    for name in ("20260101T000000Z-dev", "20260102T000000Z-run", "20260103T000000Z-dev", "20260104T000000Z-dev"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(json.dumps({}))
    a, b = compare.latest_two(tmp_path, "dev")
    assert (a.parent.name, b.parent.name) == ("20260103T000000Z-dev", "20260104T000000Z-dev")
    with pytest.raises(FileNotFoundError, match="need two"):
        compare.latest_two(tmp_path, "bench")


def test_int_list_knob() -> None:
    assert knobs.numbers("K", {"K": "256, 640,3000"}, kind=int) == [256, 640, 3000]
    for bad in ("", "a,b", "0,5"):
        with pytest.raises(ValueError, match="expected positive numbers"):
            knobs.numbers("K", {"K": bad}, kind=int)


def test_chunk_size_must_be_whole_vllm_blocks() -> None:
    env = {**os.environ, "REPRO_CHUNK_SIZE": "192", "REPRO_BLOCK_SIZE": "128"}
    with pytest.raises(KnobError, match="not a multiple of REPRO_BLOCK_SIZE"):
        Settings.from_env(env)
    env.update(REPRO_CHUNK_SIZE="64", REPRO_BLOCK_SIZE="64")
    assert "--block-size" in (argv := commands.vllm(Settings.from_env(env))) and argv[argv.index("--block-size") + 1] == "64"


def test_store_overhead_is_judged_against_the_no_connector_baseline() -> None:
    m = {"kv_bytes_per_token": 46080, "copy_bytes_per_s": 5e9, "one_token_ttft_s": 0.05, "http_rtt_s": 0.001}
    base = {"prompt_tokens": 640, "chunk_size": 0, "cold_ttft_s": 1.0, "cold_ttft_samples": [1.0, 1.01, 0.99]}
    lm = {
        "prompt_tokens": 640,
        "chunk_size": 256,
        "cold_ttft_s": 1.02,
        "cold_ttft_samples": [1.02, 1.03, 1.01],
        "warm_ttft_s": 0.2,
        "warm_ttft_samples": [0.2],
        "warm_hit_tokens": 512,
    }
    points = bench_report.merge([{"machine": m, "points": [base]}, {"machine": m, "points": [lm]}])
    merged = next(p for p in points if p["chunk_size"] == 256)
    assert merged["cold_vs_no_connector"]["verdict"] == "no change"
    assert merged["speedup"] == 5.1 and merged["tail_tokens"] == 128
    assert "| 640 | 256 |" in bench_report.table(points) and "| 640 | none |" in bench_report.table(points)


def test_lmcache_warm_ttft_stands_beside_vllms_own_prefix_cache() -> None:
    """The sweep's APC column: each LMCache point gets APC's warm TTFT at the same length and the
    ratio; APC points get no floor (nothing is copied) and their hit tokens are vLLM's own."""
    m = {"kv_bytes_per_token": 46080, "copy_bytes_per_s": 5e9, "one_token_ttft_s": 0.05, "http_rtt_s": 0.001}
    base = {"prompt_tokens": 3000, "cache": "none", "chunk_size": 0, "cold_ttft_s": 6.0, "cold_ttft_samples": [6.0]}
    apc = {
        "prompt_tokens": 3000,
        "cache": "apc",
        "chunk_size": 0,
        "cold_ttft_s": 6.1,
        "cold_ttft_samples": [6.1],
        "warm_ttft_s": 0.2,
        "warm_ttft_samples": [0.2],
        "warm_hit_tokens": 2944,
    }
    lm = {
        "prompt_tokens": 3000,
        "cache": "lmcache",
        "chunk_size": 64,
        "cold_ttft_s": 6.2,
        "cold_ttft_samples": [6.2],
        "warm_ttft_s": 0.3,
        "warm_ttft_samples": [0.3],
        "warm_hit_tokens": 2944,
    }
    points = bench_report.merge([{"machine": m, "points": [base, apc]}, {"machine": m, "points": [lm]}])
    merged = {stats.cache_of(p): p for p in points}
    assert merged["lmcache"]["apc_warm_ttft_s"] == 0.2 and merged["lmcache"]["warm_over_apc"] == 1.5
    assert "floor_s" not in merged["apc"] and merged["apc"]["speedup"] == 30.5
    assert "cold_vs_no_connector" not in merged["apc"]
    table = bench_report.table(points)
    assert "| 3000 | APC | 6.100 | 0.200 | 30.5x | 2944 |" in table and "| 0.200 | 1.50 |" in table
    assert compare.samples({"points": points}).keys() >= {"p3000 APC warm", "p3000 chunk 64 warm", "p3000 chunk 0 cold"}
    # Sweeps recorded before the column: chunk 0 is the no-connector baseline.
    assert stats.cache_of({"chunk_size": 0}) == "none" and stats.cache_of({"chunk_size": 64}) == "lmcache"


def test_checkout_state_names_edits_and_changes_with_every_edit(tmp_path) -> None:
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True, capture_output=True)

    (tmp_path / "server").mkdir()
    (tmp_path / "integration").mkdir()
    for name in ("server/a.py", "integration/b.py"):
        (tmp_path / name).write_text("x = 1\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "base")
    assert checkouts.state(tmp_path)["edited_files"] == []
    (tmp_path / "integration/b.py").write_text("x = 2\n")
    first = checkouts.state(tmp_path)
    assert first["edited_files"] == ["integration/b.py"] and first["edits_sha256"]
    assert checkouts.state(tmp_path, exclude=("integration",))["edits_sha256"] == ""
    (tmp_path / "integration/b.py").write_text("x = 3\n")
    assert checkouts.state(tmp_path)["edits_sha256"] != first["edits_sha256"]
    (tmp_path / "server/new.py").write_text("y = 1\n")
    assert "server/new.py" in checkouts.state(tmp_path, exclude=("integration",))["edited_files"]
