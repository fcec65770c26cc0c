"""The A/B's statistics on known distributions, its verdict words, its stop rule, the arms'
words and the table (pure logic; the real A/B is tests/test_ab.py)."""

from __future__ import annotations

import numpy as np
import pytest

from reproduce_vllm_lmcache.experiments import ab, ab_arms
from reproduce_vllm_lmcache.knobs import KnobError
from reproduce_vllm_lmcache.report import ab as ab_report
from reproduce_vllm_lmcache.report import stats


def lognormal(rng: np.random.Generator, n: int, median: float, sigma: float) -> list[float]:
    return list(median * np.exp(rng.normal(0.0, sigma, n)))


@pytest.mark.parametrize("paired", [True, False])
@pytest.mark.parametrize("n", [5, 30])  # Student's t below 20 samples, the bootstrap above
def test_interval_covers_the_true_ratio_about_95_percent_of_the_time(paired: bool, n: int) -> None:
    rng = np.random.default_rng(7)
    trials, covered = 200, 0
    for k in range(trials):
        a = lognormal(rng, n, 0.2, 0.1)
        b = lognormal(rng, n, 0.2 * 1.05, 0.1)
        e = stats.effect("ttft_warm", a, b, noise=0.0, paired=paired, seed=k)
        covered += e.low <= 1.05 <= e.high
    # Binomial(200, 0.95) lies in [179, 199] with probability > 0.999 (the bootstrap runs a little narrow).
    assert 178 <= covered <= 199, covered


@pytest.mark.parametrize("n", [4, 12, 40])
def test_same_distribution_rarely_called_a_change(n: int) -> None:
    rng = np.random.default_rng(11)
    calls = sum(
        stats.effect("x", lognormal(rng, n, 1.0, 0.1), lognormal(rng, n, 1.0, 0.1), noise=0.01, paired=True, seed=k).verdict != "no change"
        for k in range(200)
    )
    assert calls <= 15, calls  # nominal 5 % less what the noise threshold removes; 15/200 = 7.5 %


def test_a_real_slowdown_is_called_slower_with_its_size() -> None:
    rng = np.random.default_rng(3)
    a = lognormal(rng, 30, 0.2, 0.03)
    b = [x * 1.10 for x in lognormal(rng, 30, 0.2, 0.03)]
    e = stats.effect("ttft_warm", a, b, noise=0.01, paired=False)
    assert e.verdict == "slower" and e.low > 1.01 and e.low < 1.10 < e.high + 0.03
    assert e.text().startswith("slower by ") and "[" in e.text()


def test_throughput_up_is_faster() -> None:
    rng = np.random.default_rng(5)
    a = lognormal(rng, 20, 2.0, 0.02)
    b = [x * 1.2 for x in lognormal(rng, 20, 2.0, 0.02)]
    assert stats.effect("throughput", a, b, noise=0.01, paired=False, higher_is_better=True).verdict == "faster"


def test_verdict_words_and_no_change_bound() -> None:
    assert stats.judge(1.03, 1.08, 0.01) == "slower"
    assert stats.judge(0.90, 0.97, 0.01) == "faster"
    assert stats.judge(1.005, 1.03, 0.01) == "no change"  # the whole interval is not beyond the noise
    assert stats.judge(0.98, 1.02, 0.01) == "no change"
    e = stats.Effect("ttft_warm", 10, 10, 1.0, 1.0, 1.0, 0.976, 1.021, 0.01, True, "t", "no change", [], [])
    assert e.text().startswith("no change detected (|effect| < 2.4 % at 95 %")


def test_too_few_samples_gives_no_interval() -> None:
    e = stats.effect("ttft_warm", [1.0, 1.1], [1.0, 1.2], noise=0.01, paired=True)
    assert e.verdict == "too few samples" and not stats.narrow_enough([e], 1.0)


def test_outliers_are_listed_not_dropped() -> None:
    samples = [1.0, 1.01, 0.99, 1.02, 0.98, 1.0, 5.0]
    assert stats.outliers(samples) == [6]
    e = stats.effect("x", samples, samples, noise=0.01, paired=True)
    assert e.outliers_a == [6] and e.n_a == 7


@pytest.mark.parametrize("n", [8, 30])
def test_pairing_cancels_what_both_arms_share(n: int) -> None:
    rng = np.random.default_rng(2)
    drift = np.exp(rng.normal(0, 0.3, n))  # a machine state shared by both arms of a block
    a = list(0.2 * drift * np.exp(rng.normal(0, 0.01, n)))
    b = list(0.2 * 1.04 * drift * np.exp(rng.normal(0, 0.01, n)))
    paired = stats.effect("x", a, b, noise=0.01, paired=True)
    unpaired = stats.effect("x", a, b, noise=0.01, paired=False)
    assert paired.width < unpaired.width / 3 and paired.verdict == "slower"


def test_warmup_blocks_are_not_counted_and_pairs_stay_aligned() -> None:
    blocks = [
        {"warmup": True, "samples": {"a": {"metrics": {"m": [9.0]}}, "b": {"metrics": {"m": [9.0]}}}},
        {"warmup": False, "samples": {"a": {"metrics": {"m": [1.0, 2.0]}}, "b": {"metrics": {"m": [3.0, 4.0]}}}},
        {"warmup": False, "samples": {"a": {"metrics": {"m": [5.0]}}, "b": {"metrics": {"m": [6.0]}}}},
    ]
    assert ab.paired_samples(blocks, "a", "m") == [1.0, 2.0, 5.0] and ab.paired_samples(blocks, "b", "m") == [3.0, 4.0, 6.0]


def test_paired_ratio_shrugs_off_a_burst() -> None:
    a = [0.20] * 28 + [0.60, 0.20]
    b = [0.21] * 28 + [0.21, 0.62]  # a burst hit A in one pair and B in the next
    e = stats.effect("ttft_warm", a, b, noise=0.01, paired=True)
    assert e.ratio == pytest.approx(1.05, abs=1e-3)


def test_arm_words() -> None:
    assert ab_arms.parse("a", ["REPRO_PATCHES=upstream", "LMCache@HEAD"]) == ({"REPRO_PATCHES": "upstream"}, {"LMCache": "HEAD"})
    assert ab_arms.parse("b", ["@v1", "tree"])[1] == {"LMCache": "v1", "vllm": "v1"}
    assert ab_arms.parse("b", []) == ({}, {})
    for bad in (["REPRO_NOT_A_KNOB=1"], ["REPRO_VLLM_PORT=9"], ["nonsense"], ["LMCache@"], ["other@HEAD"]):
        with pytest.raises(KnobError):
            ab_arms.parse("a", bad)


def test_workload_point_knob() -> None:
    assert ab_arms.workload_point({"REPRO_AB_WORKLOAD_POINT": "apc:1:0.5"}) == ("apc", 1, 0.5)
    for bad in ("lmcache:4", "nope:1:1", "lmcache:0:2", "lmcache:x:2"):
        with pytest.raises(KnobError):
            ab_arms.workload_point({"REPRO_AB_WORKLOAD_POINT": bad})


def test_table_shows_sample_size_interval_verdict_and_checks() -> None:
    rng = np.random.default_rng(1)
    blocks = []
    for i in range(8):
        a, b = lognormal(rng, 3, 0.2, 0.02), lognormal(rng, 3, 0.24, 0.02)
        blocks.append(
            {
                "index": i,
                "warmup": i == 0,
                "order": ["a", "b"],
                "same_answer": True,
                "samples": {arm: {"metrics": {"ttft_warm": v}, "checks": {"hit": True}, "detail": {}} for arm, v in (("a", a), ("b", b))},
            }
        )
    data = {
        "measure": "pairs",
        "prompt_tokens": 1000,
        "arms": {"a": {"label": "@HEAD"}, "b": {"label": "working tree"}},
        "blocks": blocks,
        "stopped": "most blocks (7)",
        "sampling_s": 60,
        "plan": {"noise": 0.01},
        "effects": [e.as_dict() for e in ab.effects(0.01, blocks, ("ttft_warm",))],
    }
    text = ab_report.render(data)
    assert "7 samples per arm" in text and "1 warm-up block(s) not counted" in text
    assert "slower by" in text and "hit: A 7/7, B 7/7" in text and "same answer in both arms: 7/7" in text


def test_plant_puts_one_line_after_retrieves_timer() -> None:
    from reproduce_vllm_lmcache.experiments import ab_calibrate

    text = "def store(self):\n        st = time.perf_counter()\n    def retrieve(\n        self,\n    ):\n        st = time.perf_counter()\n        x = 1\n"
    planted, line = ab_calibrate.plant(text, 0.005)
    lines = planted.splitlines()
    assert line == 7 and lines[6].strip().startswith("time.sleep(0.005)") and lines[1].strip() == "st = time.perf_counter()"
    assert len(lines) == len(text.splitlines()) + 1
    with pytest.raises(KnobError):
        ab_calibrate.plant("def other():\n    pass\n", 0.005)


def test_calibration_tally_and_detectable_effect() -> None:
    from reproduce_vllm_lmcache.experiments import ab_calibrate

    def session(verdict: str, low: float, high: float) -> dict:
        return {
            "effects": [{"metric": "ttft_warm", "verdict": verdict, "low": low, "high": high, "ratio": (low + high) / 2, "median_a": 0.2}]
        }

    sessions = [session("no change", 0.99, 1.03), session("slower", 1.02, 1.06), session("no change", 0.98, 1.02)]
    assert ab_calibrate.tally(sessions, 0.01) == {"ttft_warm": {"no change": 2, "slower": 1}}
    assert ab_calibrate.tally(sessions, 0.03) == {"ttft_warm": {"no change": 3}}  # re-judged at another threshold
    rows = {r["noise_threshold"]: r for r in ab_calibrate.by_threshold(sessions, sessions)}
    assert rows[0.01]["aa_false"] == {"ttft_warm": 1} and rows[0.02]["planted_warm_slower"] == 0
    assert ab_calibrate.detectable(sessions, 0.01) == {"ttft_warm": 0.05}
    added = ab_calibrate.added_ms(sessions)
    assert added[1]["low"] == pytest.approx(4.0) and added[1]["high"] == pytest.approx(12.0)


def test_retrieve_times_from_lmcache_log(tmp_path) -> None:
    from reproduce_vllm_lmcache.experiments import ab_calibrate

    log = tmp_path / "lmcache-b.log"
    log.write_text(
        "x LMCache INFO: Retrieved 960 tokens in 0.012 seconds (lmcache_driven_transfer.py)\nother\nRetrieved 64 tokens in 0.0051 seconds\n"
    )
    assert ab_calibrate.retrieve_ms(log) == pytest.approx([12.0, 5.1])
    assert ab_calibrate.retrieve_ms(tmp_path / "missing.log") == []
