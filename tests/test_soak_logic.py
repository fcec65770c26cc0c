"""The soak's pure logic (scripts/soak.sh, experiments/soak.py, servers/prometheus.py): the restart
window, the verdicts computed from samples and counters, the Prometheus config, the simulator's table."""

from __future__ import annotations

import os
from multiprocessing import shared_memory

import pytest

from reproduce_vllm_lmcache.report import soak
from reproduce_vllm_lmcache.servers import prometheus

BOUNDS = soak.Bounds(warmup_s=10, recovery_s=5, rss_growth_mb=100, shm_growth_mb=10, hit_recovery=0.8, eviction_share=0.5, tie_tolerance=0)


def row(submit: float, finish: float, ok: bool, workload: str = "chat") -> dict:
    return {
        "workload": workload,
        "round": "round-001",
        "ok": ok,
        "ttft_s": 0.5 if ok else -1,
        "submit": submit,
        "finish": finish,
        "error": "" if ok else "Connection error.",
    }


def test_failures_are_placed_inside_or_outside_the_restart_window() -> None:
    window = soak.Window(killed_at=100, ready_at=110, grace_s=5)
    assert window.end == 115 and window.contains(100) and window.contains(115) and not window.contains(116)
    rows = [
        row(10, 12, True),
        row(95, 101, False),  # in flight at the kill
        row(112, 113, False),  # during the grace
        row(120, 121, False, "docs"),  # after it: counts against the server
        row(130, 131, True, "docs"),
    ]
    found = soak.classify(rows, window)
    assert (found["done"], found["failed_in_restart_window"], found["failed_outside_restart_window"]) == (2, 2, 1)
    assert found["by_workload"] == {"chat": {"done": 1, "failed": 2}, "docs": {"done": 1, "failed": 1}}
    assert found["errors"] == {"Connection error.": 3}
    assert soak.classify(rows, None)["failed_outside_restart_window"] == 3


def test_growth_after_warm_up_uses_medians_and_needs_enough_samples() -> None:
    flat = [(t, 100.0 + (50 if t < 10 else 0)) for t in range(0, 40)]  # a warm-up bump, then flat
    assert soak.growth(flat, 10)["growth"] == 0
    leak = [(float(t), 100.0 + t) for t in range(0, 40)]
    assert soak.growth(leak, 10)["growth"] == pytest.approx(27)  # 138 - 111
    assert soak.growth(leak[:14], 10) is None  # 4 samples after warm-up: too few


def sample(t: float, rss: dict[int, int], shm: int) -> dict:
    return {
        "t": t,
        "processes": [{"role": "vllm", "leader": 1, "pid": p, "name": "vllm", "rss_bytes": r} for p, r in rss.items()],
        "shm_mapped_bytes": shm,
    }


def test_memory_verdicts_fail_on_a_leak_and_pass_when_flat() -> None:
    flat = [sample(t, {1: 500_000_000, 2: 300_000_000}, 20_000_000) for t in range(0, 60, 2)]
    found = soak.memory_verdicts(flat, BOUNDS)
    assert found["rss"]["passed"] and found["shm"]["passed"] and found["rss"]["processes_judged"] == 2
    leaky = [sample(t, {1: 500_000_000 + t * 10_000_000, 2: 300_000_000}, 20_000_000 + t * 1_000_000) for t in range(0, 60, 2)]
    found = soak.memory_verdicts(leaky, BOUNDS)
    assert not found["rss"]["passed"] and found["rss"]["worst_process"] == "vllm vllm 1"
    assert not found["shm"]["passed"] and found["shm"]["growth_mb"] > 10
    assert not soak.memory_verdicts([], BOUNDS)["rss"]["passed"]  # nothing sampled is no pass


def counters(name: str, points: list[tuple[float, float]]) -> dict:
    return {name: {"query": "", "series": [{"labels": {}, "values": [[t, v] for t, v in points]}]}}


def test_hit_rate_recovery_from_counter_readings() -> None:
    # Hits 50% of queries before the kill at t=100, none while down, 45% from t=120 on.
    queries = [(t, 10.0 * t) for t in range(0, 201, 5)]
    hits = [(t, 5.0 * min(t, 100) + (4.5 * (t - 120) if t > 120 else 0)) for t in range(0, 201, 5)]
    series = {**counters("vllm_external_hit_tokens", hits), **counters("vllm_external_query_tokens", queries)}
    window = soak.Window(killed_at=100, ready_at=115, grace_s=5)
    found = soak.hit_verdict(series, 0, 200, window, BOUNDS)
    assert found["before_restart"] == 0.5 and found["after_restart"] == 0.45 and found["passed"]
    slow = soak.Bounds(**{**BOUNDS.__dict__, "hit_recovery": 0.95})
    assert not soak.hit_verdict(series, 0, 200, window, slow)["passed"]
    assert not soak.hit_verdict(series, 0, 200, None, BOUNDS)["passed"]
    assert soak.hit_rate([], queries, 0, 10) is None


def test_hit_rate_after_the_restart_ends_with_the_mixed_load() -> None:
    # 50% hits throughout while both workloads run (to t=170); then one workload alone, no hits.
    queries = [(t, 10.0 * t) for t in range(0, 201, 5)]
    hits = [(t, 5.0 * min(t, 170)) for t in range(0, 201, 5)]
    series = {**counters("vllm_external_hit_tokens", hits), **counters("vllm_external_query_tokens", queries)}
    window = soak.Window(killed_at=100, ready_at=110, grace_s=5)
    rows = [{"workload": "docs", "finish": 20.0}, {"workload": "docs", "finish": 170.0}, {"workload": "chat", "finish": 199.0}]
    mixed = soak.mixed_until(rows, 200)
    assert mixed == 170
    found = soak.hit_verdict(series, 0, 200, window, BOUNDS, mixed)
    assert found["after_restart"] == 0.5 and found["passed"] and "30 s before the load's end" in found["detail"]
    assert not soak.hit_verdict(series, 0, 200, window, BOUNDS)["passed"]  # to the load's end: 0.5 x 50/80
    assert soak.mixed_until([], 200) == 200


def test_eviction_share_after_warm_up() -> None:
    series = counters("l1_evicted_chunks_per_s", [(t, 0.0 if t < 30 else 2.0) for t in range(0, 100, 5)])
    assert soak.eviction_verdict(series, 0, BOUNDS)["share_of_samples_evicting"] == pytest.approx(14 / 18, abs=1e-3)
    assert not soak.eviction_verdict(counters("l1_evicted_chunks_per_s", [(t, 0.0) for t in range(0, 100, 5)]), 0, BOUNDS)["passed"]


def answer(prompt: str, tokens: list[str], hit: int) -> dict:
    return {
        "prompt": prompt,
        "prompt_tokens": 1000,
        "vllm_external_hit_tokens": hit,
        "output_tokens": tokens,
        "output_text": "".join(tokens),
        "top_logprobs": [{t: -0.1, "x": -2.0} for t in tokens],
    }


def test_answers_must_be_hits_and_token_identical() -> None:
    base = [answer("s0", ["a", "b"], 0), answer("s1", ["c", "d"], 0)]
    assert soak.answer_verdict([answer("s0", ["a", "b"], 960), answer("s1", ["c", "d"], 960)], base, 0)["passed"]
    differs = soak.answer_verdict([answer("s0", ["a", "b"], 960), answer("s1", ["c", "e"], 960)], base, 0)
    assert not differs["passed"] and differs["token_identical"] == 1
    assert not soak.answer_verdict([answer("s0", ["a", "b"], 0)], base, 0)["passed"]  # no hit: not a cache answer
    assert not soak.answer_verdict([], base, 0)["passed"]


def test_the_simulator_table_is_parsed_and_read_at_a_capacity() -> None:
    text = (
        "Loaded 12 event(s)\n\n    Capacity (GiB)    Hit rate\n"
        + "-" * 32
        + "\n             0.100      10.00%\n             1.000      50.00%\n\nPlot saved"
    )
    curve = soak.parse_sweep(text)
    assert curve == [(0.1, 0.1), (1.0, 0.5)]
    assert soak.simulated_at(curve, 0.55) == pytest.approx(0.3) and soak.simulated_at(curve, 2) is None
    status = {"cache_context_meta": {"m": {"kv_cache_layout": {"cache_size_per_token": 46080}}}}
    assert soak.kv_bytes_per_chunk(status, 64) == 2_949_120
    with pytest.raises(FileNotFoundError):
        soak.kv_bytes_per_chunk({}, 64)


def test_prometheus_config_scrapes_both_servers_on_loopback(tmp_path) -> None:
    text = prometheus.config_text({"vllm": "127.0.0.1:8000", "lmcache": "127.0.0.1:8080"}, 5)
    assert "scrape_interval: 5s" in text and "job_name: vllm" in text and "targets: ['127.0.0.1:8080']" in text
    argv = prometheus.argv("/usr/bin/prometheus", tmp_path / "p.yml", tmp_path / "data", "127.0.0.1", 9090)
    assert "--web.listen-address=127.0.0.1:9090" in argv and f"--storage.tsdb.path={tmp_path / 'data'}" in argv
    with pytest.raises(FileNotFoundError, match="apt install prometheus"):
        prometheus.find_binary("no-such-prometheus-binary")
    pids = tmp_path / "pids"
    pids.write_text(f"lmcache {os.getpid()}\nvllm 12345\n")
    assert prometheus.read_leaders(pids) == {os.getpid(): "lmcache", 12345: "vllm"}


def test_sample_sees_this_process_group_and_its_shm() -> None:
    segment = shared_memory.SharedMemory(create=True, size=1 << 20)  # a /dev/shm segment this process maps
    try:
        found = prometheus.sample({os.getpgid(0): "tests"})
    finally:
        segment.close()
        segment.unlink()
    assert any(p["pid"] == os.getpid() and p["rss_bytes"] > 0 for p in found["processes"])
    assert found["shm_mapped_bytes"] >= 1 << 20


def test_anon_split_places_a_large_allocation_in_an_anonymous_mapping() -> None:
    before = prometheus.anon_split(os.getpid())
    block = bytearray(64 << 20)  # past glibc's mmap threshold: its own anonymous mapping
    block[::4096] = b"x" * len(block[::4096])  # touch every page
    after = prometheus.anon_split(os.getpid())
    assert after["anon_mmap_bytes"] - before["anon_mmap_bytes"] >= 60 << 20
    assert abs(after["anon_heap_bytes"] - before["anon_heap_bytes"]) < 16 << 20
    assert after["anon_regions"] >= 1
    del block


def test_memory_verdicts_show_where_the_growth_sits() -> None:
    rows = []
    for t in range(0, 60, 2):
        row = sample(t, {1: 500_000_000 + t * 1_000_000}, 0)
        row["processes"][0].update(anon_heap_bytes=100_000_000, anon_mmap_bytes=200_000_000 + t * 1_000_000, anon_regions=10 + t // 10)
        rows.append(row)
    (found,) = soak.memory_verdicts(rows, BOUNDS)["processes"].values()
    assert found["heap_growth"] == 0 and found["mmap_growth"] == found["growth"] > 0
    assert found["regions"][1] > found["regions"][0]
    (old,) = soak.memory_verdicts([sample(t, {1: 5}, 0) for t in range(0, 60, 2)], BOUNDS)["processes"].values()
    assert old["heap_growth"] is None and old["regions"] is None  # samples from before the split


def test_anon_split_names_the_malloc_a_process_runs() -> None:
    """A child started with tcmalloc preloaded (where installed) is seen running it; one without, glibc's."""
    import subprocess
    import sys

    from reproduce_vllm_lmcache.workspace import system

    code = (
        "import json, os, sys; from reproduce_vllm_lmcache.servers import prometheus; print(prometheus.anon_split(os.getpid())['malloc'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    plain = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert plain == "glibc"
    lib = system.find_library("libtcmalloc_minimal.so*")
    if lib:
        found = subprocess.run([sys.executable, "-c", code], env={**env, "LD_PRELOAD": lib}, capture_output=True, text=True, check=True)
        assert found.stdout.strip() == "tcmalloc"
