"""Pure logic of the client: prompt building, metric parsing, verdicts, results files."""

import json
import re

import pytest

from reproduce_vllm_lmcache.experiments import prompts
from reproduce_vllm_lmcache.report import judging, results
from reproduce_vllm_lmcache.servers import metrics


def word_tokenizer(text: str) -> list[int]:
    """A stand-in tokenizer for pure logic: one id per word or punctuation mark."""
    return [hash(t) % 50000 for t in re.findall(r"\w+|[^\w\s]", text)]


@pytest.mark.parametrize("length", [40, 640, 3000])
def test_prompt_has_the_exact_token_count(length) -> None:
    assert len(prompts.build(word_tokenizer, length, seed="a")) == length


def test_prompts_are_deterministic_per_seed_and_differ_across_seeds() -> None:
    a = prompts.build(word_tokenizer, 500, seed="a")
    assert prompts.build(word_tokenizer, 500, seed="a") == a
    b = prompts.build(word_tokenizer, 500, seed="b")
    # Different seeds share no long prefix, so one prompt never hits another's cache.
    assert a[:64] != b[:64]


def test_prompt_too_short_for_its_frame_is_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        prompts.build(word_tokenizer, 5, seed="a")


PROM_TEXT = """# HELP lmcache_mp_l1_write_chunks_total chunks written
# TYPE lmcache_mp_l1_write_chunks_total counter
lmcache_mp_l1_write_chunks_total{instance="a"} 3.0
lmcache_mp_l1_write_chunks_total{instance="b"} 2.0
# HELP vllm:external_prefix_cache_hits_total hits
# TYPE vllm:external_prefix_cache_hits_total counter
vllm:external_prefix_cache_hits_total{engine="0",model_name="m"} 512.0
"""


def test_metric_parsing_sums_over_labels_and_keeps_colon_names() -> None:
    parsed = metrics.parse(PROM_TEXT)
    assert parsed[metrics.LMCACHE_WRITES] == 5.0
    assert parsed[metrics.VLLM_EXTERNAL_HITS] == 512.0


def test_counter_deltas_pick_the_right_server() -> None:
    before = metrics.Counters({metrics.LMCACHE_READS: 1}, {metrics.VLLM_EXTERNAL_HITS: 100})
    after = metrics.Counters({metrics.LMCACHE_READS: 3}, {metrics.VLLM_EXTERNAL_HITS: 612})
    assert after.delta(before, metrics.LMCACHE_READS) == 2
    assert after.delta(before, metrics.VLLM_EXTERNAL_HITS) == 512
    assert after.delta(before, metrics.LMCACHE_WRITES) == 0


def make_round(name: str, ttft: float, writes: int, reads: int, hits: int, text: str) -> dict:
    return {
        "name": name,
        "prompt": "p640",
        "prompt_tokens": 640,
        "ttft_s": ttft,
        "total_s": ttft + 1,
        "output_text": text,
        "lmcache_l1_write_chunks": writes,
        "lmcache_l1_read_chunks": reads,
        "vllm_external_hit_tokens": hits,
        "vllm_external_query_tokens": 640,
    }


def test_verdicts_pass_only_with_store_hit_and_identical_output() -> None:
    good = [make_round("cold", 2.0, 2, 0, 0, "x"), make_round("warm", 0.5, 0, 2, 512, "x")]
    (v,) = judging.verdicts(good)
    assert v["stored_on_cold"] and v["hit_on_warm"] and v["output_identical"] and v["speedup"] == 4.0
    assert judging.passed([v])
    miss = [make_round("cold", 2.0, 2, 0, 0, "x"), make_round("warm", 1.9, 0, 0, 0, "x")]
    assert not judging.passed(judging.verdicts(miss))
    changed = [make_round("cold", 2.0, 2, 0, 0, "x"), make_round("warm", 0.5, 0, 2, 512, "y")]
    assert not judging.passed(judging.verdicts(changed))
    assert not judging.passed([])


def test_table_shows_speedup_chunks_and_identity() -> None:
    text = judging.table([make_round("cold", 2.0, 2, 0, 0, "x"), make_round("warm", 0.5, 0, 2, 512, "x")])
    warm_line = text.splitlines()[-1]
    assert "4.0x" in warm_line and "0/2" in warm_line and "512" in warm_line and "yes" in warm_line


def test_results_are_written_to_a_timestamped_folder_and_latest(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("REPRO_RESULTS_DIR", str(tmp_path))
    run_dir = results.new_run_dir("e2e", now=0)
    assert run_dir == tmp_path / "runs" / "19700101T000000Z-e2e"
    path = results.write(run_dir, "run.json", {"config": {}, "rounds": []})
    assert json.loads(path.read_text()) == json.loads((tmp_path / "latest.json").read_text())


def test_environment_names_versions_cpu_and_checkout_state() -> None:
    env = results.environment()
    assert env["vllm_version"].endswith("+cpu") and env["lmcache_version"]
    assert env["cpu_cores"] >= 1 and env["cpu_model"]
    assert set(env["checkouts"]) == {"vllm", "LMCache"}
    assert len(env["checkouts"]["vllm"]["head"]) == 40


def with_tokens(round_: dict, tokens: list[str], tops: list[dict[str, float]]) -> dict:
    return {**round_, "output_tokens": tokens, "output_text": "".join(tokens), "top_logprobs": tops}


def test_divergence_names_the_first_differing_token_and_margins() -> None:
    cold = with_tokens(make_round("cold", 2, 2, 0, 0, ""), ["a", "b", "c"], [{"a": -0.1}, {"b": -1.0, "x": -1.0}, {"c": -0.2}])
    warm = with_tokens(make_round("warm", 1, 0, 2, 512, ""), ["a", "x", "y"], [{"a": -0.1}, {"x": -0.9, "b": -1.025}, {"y": -0.3}])
    div = judging.divergence(cold, warm)
    assert div == {"index": 1, "reference_token": "b", "other_token": "x", "margin_reference": 0.0, "margin_other": 0.125}
    assert judging.is_tie(div, 0.0)
    (v,) = judging.verdicts([cold, warm])
    assert not v["output_identical"] and v["diverged_at_tie"] and judging.passed([v])
    assert "tie@1" in judging.table([cold, warm])


def test_a_real_divergence_is_not_a_tie() -> None:
    cold = with_tokens(make_round("cold", 2, 2, 0, 0, ""), ["a", "b"], [{"a": -0.1}, {"b": -0.5, "x": -2.0}])
    warm = with_tokens(make_round("warm", 1, 0, 2, 512, ""), ["a", "x"], [{"a": -0.1}, {"x": -0.4, "b": -1.9}])
    (v,) = judging.verdicts([cold, warm], tie_tolerance=0.0)
    assert not v["diverged_at_tie"] and not judging.passed([v])
    assert v["divergence"]["margin_reference"] == 1.5
    assert "NO@1" in judging.table([cold, warm])


def test_a_run_that_stops_early_diverges_where_it_stopped() -> None:
    cold = with_tokens(make_round("cold", 2, 2, 0, 0, ""), ["a", "b"], [{"a": -0.1}, {"b": -0.7, "<eos>": -0.7}])
    warm = with_tokens(make_round("warm", 1, 0, 2, 512, ""), ["a"], [{"a": -0.1}])
    div = judging.divergence(cold, warm)
    assert div["index"] == 1 and div["other_token"] is None and div["margin_reference"] == 0.0


def test_history_row_shows_each_repeat_of_a_prompt_with_its_own_times() -> None:
    rounds = [
        make_round("cold", 2.0, 2, 0, 0, "x"),
        make_round("warm", 0.5, 0, 2, 512, "x"),
        make_round("cold", 3.0, 2, 0, 0, "y"),
        make_round("warm", 0.25, 0, 2, 512, "y"),
    ]
    config = {"dtype": "float32", "enforce_eager": True, "prefix_caching": False, "transfer_mode": "lmcache_driven", "chunk_size": 64}
    row = judging.history_row("run", {"config": config, "rounds": rounds})
    assert "2.00 -> 0.50 s (4.0x" in row and "3.00 -> 0.25 s (12.0x" in row
