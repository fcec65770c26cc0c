"""The workload sweep's pure logic: knobs refused before anything starts, the configurations'
server knobs, and the run folder's rows, answers and targets."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from reproduce_vllm_lmcache.experiments.workload import Knobs
from reproduce_vllm_lmcache.report import workloads
from reproduce_vllm_lmcache.servers.settings import KnobError, Settings

KV = 46080  # bytes per token of the default model in float32


def knobs(**env: str) -> Knobs:
    return Knobs.from_env({**os.environ, **env})


def settings(**env: str) -> Settings:
    return Settings.from_env({**os.environ, "REPRO_PROMPT_TOKENS": "544", "REPRO_MAX_MODEL_LEN": "1024", **env})


def test_documents_follow_the_ratio_and_capacity() -> None:
    k = knobs(REPRO_WORKLOAD_CAPACITY_TOKENS="4096", REPRO_WORKLOAD_PREFIX_TOKENS="512", REPRO_WORKLOAD_RATIOS="0.5,1,2,4")
    assert [k.documents(r) for r in k.ratios] == [4, 8, 16, 32]
    assert k.documents(0.01) == 1


def test_server_env_sets_capacity_with_the_null_block_and_keeps_user_args() -> None:
    k = knobs(REPRO_WORKLOAD_CAPACITY_TOKENS="4096")
    env = k.server_env("apc+lmcache", 4, {**os.environ, "REPRO_BLOCK_SIZE": "64", "REPRO_VLLM_EXTRA_ARGS": "--seed 3"})
    assert env["REPRO_CONNECTOR"] == "1" and env["REPRO_PREFIX_CACHING"] == "1" and env["REPRO_MAX_NUM_SEQS"] == "4"
    assert env["REPRO_VLLM_EXTRA_ARGS"] == "--seed 3 --num-gpu-blocks-override 65"
    assert k.server_env("none", 1)["REPRO_CONNECTOR"] == "0"


def test_the_default_knobs_pass_the_check() -> None:
    lines = knobs().check(settings(), KV)
    assert "working set 4x" in "\n".join(lines)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"REPRO_WORKLOAD_CAPACITY_TOKENS": "512"}, ["REPRO_WORKLOAD_CAPACITY_TOKENS=512", "REPRO_WORKLOAD_MAX_MODEL_LEN=1024", "refuses"]),
        ({"REPRO_WORKLOAD_CAPACITY_TOKENS": "4100"}, ["multiple of", "REPRO_BLOCK_SIZE=64"]),
        ({"REPRO_WORKLOAD_PREFIX_TOKENS": "1000"}, ["REPRO_WORKLOAD_PREFIX_TOKENS=1000", "1040 tokens"]),
        ({"REPRO_WORKLOAD_PREFIX_TOKENS": "500"}, ["whole LMCache chunks"]),
        (
            {"REPRO_WORKLOAD_RATIOS": "0.5,16", "REPRO_WORKLOAD_LDQA_RATIOS": ""},
            ["65536 tokens", "REPRO_L1_SIZE_GB=1", "set REPRO_L1_SIZE_GB=3.2"],
        ),
    ],
)
def test_bad_knobs_are_refused_with_their_numbers(env: dict[str, str], words: list[str]) -> None:
    with pytest.raises(KnobError) as err:
        knobs(**env).check(settings(), KV)
    for word in words:
        assert word in str(err.value)


def test_a_working_set_the_l1_cannot_hold_is_fine_without_lmcache() -> None:
    k = knobs(REPRO_WORKLOAD_RATIOS="16", REPRO_WORKLOAD_LDQA_RATIOS="16", REPRO_WORKLOAD_CONFIGURATIONS="none,apc")
    assert k.check(settings(), KV)


@pytest.mark.parametrize(
    ("env", "word"),
    [
        ({"REPRO_WORKLOAD_CONFIGURATIONS": "none,lmcash"}, "lmcash"),
        ({"REPRO_WORKLOAD_RATIOS": "0.5,-1"}, "REPRO_WORKLOAD_RATIOS"),
        ({"REPRO_WORKLOAD_CONCURRENCY": "1,two"}, "REPRO_WORKLOAD_CONCURRENCY"),
        ({"REPRO_WORKLOAD_LDQA_RATIOS": "3"}, "REPRO_WORKLOAD_LDQA_RATIOS"),
        ({"REPRO_WORKLOAD_REPEATS": "0"}, "REPRO_WORKLOAD_REPEATS"),
    ],
)
def test_unparseable_knobs_are_refused(env: dict[str, str], word: str) -> None:
    with pytest.raises(KnobError, match=word):
        knobs(**env)


def _point(
    root: Path,
    name: str,
    ratio: float,
    ttft_ms: float,
    req_s: float,
    local: int,
    external: int,
    texts: list[str],
    spread: tuple[float, ...] = (1.0,),
) -> None:
    """A point whose measured passes are the given one scaled by each factor of ``spread``."""
    out = root / "points" / f"{name}-c1-x{ratio:g}"
    out.mkdir(parents=True)
    passes = {}
    for n, f in enumerate(spread, start=1):
        key = "measured" if n == 1 else f"measured-{n}"
        detail = {"generated_texts": texts, "output_lens": [4] * len(texts), "p50_ttft_ms": ttft_ms * f, "p99_ttft_ms": ttft_ms * 2}
        (out / f"{key}.json").write_text(json.dumps(detail))
        passes[key] = {
            "result": f"{key}.json",
            "completed": len(texts),
            "failed": 0,
            "duration": len(texts) / req_s,
            "total_input_tokens": 1000,
            "request_throughput": req_s / f,
            "output_throughput": 4 * req_s,
            "counters": {workloads.LOCAL: local, workloads.EXTERNAL: external},
        }
    point = {
        "configuration": name,
        "concurrency": 1,
        "ratio": ratio,
        "documents": 2,
        "capacity_tokens": 1024,
        "prefix_tokens": 256,
        "passes": passes,
    }
    (out / "point.json").write_text(json.dumps(point))


def test_summary_targets_and_answers(tmp_path: Path) -> None:
    _point(tmp_path, "none", 4, 500, 1.0, 0, 0, ["a", "b"])
    _point(tmp_path, "apc", 4, 400, 1.2, 100, 0, ["a", "b"])
    _point(tmp_path, "lmcache", 4, 50, 3.0, 0, 900, ["a", "x"])
    _point(tmp_path, "apc", 0.5, 100, 4.0, 900, 0, ["a", "b"])
    _point(tmp_path, "apc+lmcache", 0.5, 105, 3.5, 900, 0, ["a", "b"])
    run = {
        "configuration": "none",
        "machine": {"kv_bytes_per_token": KV, "copy_bytes_per_s": 1e10},
        "knobs": {"prefix_tokens": 256, "suffix_tokens": 32},
    }
    (tmp_path / "points" / "run-none-c1.json").write_text(json.dumps(run))
    s = workloads.summarize(tmp_path)
    assert s["baseline"] == "none"
    rows = {(r["configuration"], r["ratio"]): r for r in s["rows"]}
    assert rows[("lmcache", 4)]["answers"] == {"compared": 2, "identical": 1, "first_different": 1, "output_lens_equal": True}
    assert rows[("apc", 4)]["hit_rate"] == 0.1
    small, big = s["targets"]
    assert big["ttft_p50_gain"] == 8.0 and big["throughput_gain"] == 2.5 and big["reached"]
    assert small["throughput_cost"] == 0.125 and not small["reached"]
    assert not s["passed"], "one answer differs from the baseline"
    assert s["floor_s"] == pytest.approx(256 * KV / 1e10 + 32 * 0.5 / 288, abs=1e-4)
    table = workloads.table(s["rows"])
    assert "| lmcache | 1 | 4x |" in table and "1/2" in table


def test_targets_are_judged_by_their_interval(tmp_path: Path) -> None:
    """The point clears the 5x TTFT bar (6x), but its passes spread so much that the interval does not."""
    _point(tmp_path, "apc", 4, 600, 1.0, 100, 0, ["a"], spread=(1.0, 1.01, 0.99))
    _point(tmp_path, "lmcache", 4, 100, 3.0, 0, 900, ["a"], spread=(1.0, 1.6, 0.7))
    (target,) = workloads.targets(workloads.summarize(tmp_path)["rows"])
    assert target["ttft_p50_gain"] == pytest.approx(6.0, rel=0.1) and target["measured_passes"] == [3, 3]
    low = float(target["ttft_p50_gain_95"].strip("[]").split(",")[0])
    assert low < 5.0 and not target["reached"]


def test_a_clean_run_passes_and_a_leaking_apc_fails(tmp_path: Path) -> None:
    _point(tmp_path, "apc", 2, 400, 1.0, 100, 0, ["a"])
    _point(tmp_path, "lmcache", 2, 50, 3.0, 0, 900, ["a"])
    assert workloads.summarize(tmp_path)["passed"]
    bad = tmp_path / "bad"
    _point(bad, "apc", 2, 400, 1.0, 100, 5, ["a"])
    _point(bad, "lmcache", 2, 50, 3.0, 10, 900, ["a"])
    failed = [c["what"] for c in workloads.summarize(bad)["checks"] if not c["passed"]]
    assert len(failed) == 2 and "external" in failed[1] + failed[0]


def test_knobs_replace_keeps_types() -> None:
    k = replace(knobs(), ratios=(1.0,))
    assert k.documents(1.0) == k.capacity_tokens // k.prefix_tokens
