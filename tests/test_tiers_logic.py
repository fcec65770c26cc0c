"""Pure logic of the eviction model and of `repro status`."""

import pytest

from reproduce_vllm_lmcache.experiments import eviction
from reproduce_vllm_lmcache.servers import status

MB = 1_000_000


def lru(capacity_mb: float = 268.4, chunk_mb: float = 11.8) -> eviction.L1Model:
    return eviction.L1Model("LRU", int(capacity_mb * MB), int(chunk_mb * MB))


def test_lru_evicts_the_least_recently_used_prompts_and_a_hit_refreshes() -> None:
    model = lru()
    hits = [model.request(name, 4) for name in eviction.stream(6)]
    # P1..P4 miss, P1 again hits in full, P5 and P6 miss and push the two oldest out.
    assert hits == [0, 0, 0, 0, 4, 0, 0]
    resident = {f"P{i}": model.resident_prefix(f"P{i}", 4) for i in range(1, 7)}
    assert resident == {"P1": 4, "P2": 0, "P3": 0, "P4": 4, "P5": 4, "P6": 4}
    assert eviction.policy_shown("LRU", resident, 4, evicted=8, last="P6")[0]


def test_lru_eviction_takes_a_ratio_of_the_tracked_chunks_per_tick() -> None:
    model = eviction.L1Model("LRU", capacity_bytes=100, chunk_bytes=10, watermark=0.8, ratio=0.2)
    model.request("A", 5)
    model.request("B", 3)  # 8 chunks = 80 bytes >= 80: evict int(8 * 0.2) = 1, the oldest
    assert model.resident_prefix("A", 5) == 0 and len(model.order) == 7


def test_noop_keeps_the_oldest_and_an_allocation_that_does_not_fit_stores_nothing() -> None:
    model = eviction.L1Model("noop", int(268.4 * MB), int(11.8 * MB))
    for name in eviction.stream(6):
        model.request(name, 4)
    resident = {f"P{i}": model.resident_prefix(f"P{i}", 4) for i in range(1, 7)}
    assert resident == {"P1": 4, "P2": 4, "P3": 4, "P4": 4, "P5": 4, "P6": 0}
    assert eviction.policy_shown("noop", resident, 4, evicted=0, last="P6")[0]
    assert not eviction.policy_shown("noop", resident, 4, evicted=3, last="P6")[0]


def test_probes_go_to_the_predicted_hits_first() -> None:
    model = lru()
    for name in eviction.stream(6):
        model.request(name, 4)
    assert eviction.probe_order(model, [f"P{i}" for i in range(1, 7)], 4) == ["P1", "P4", "P5", "P6", "P2", "P3"]


def test_lru_not_shown_when_nothing_overflowed() -> None:
    model = lru(capacity_mb=10_000)
    for name in eviction.stream(6):
        model.request(name, 4)
    resident = {f"P{i}": model.resident_prefix(f"P{i}", 4) for i in range(1, 7)}
    ok, why = eviction.policy_shown("LRU", resident, 4, evicted=0, last="P6")
    assert not ok and "did not overflow" in why


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        ({}, "no prompt served yet"),
        ({"local_compute": 900.0}, "has not helped yet: all 900 prompt tokens were computed"),
        (
            {"local_compute": 200.0, "external_kv_transfer": 768.0, "local_cache_hit": 32.0},
            "80.0 % of 1000 prompt tokens were not computed (768 from LMCache, 32 from vLLM's own prefix cache)",
        ),
    ],
)
def test_status_verdict_says_how_much_the_cache_saved(sources, expected) -> None:
    assert expected in status.verdict([{"up": True, "prompt_tokens_by_source": sources}, {"url": "down", "up": False}])


def test_status_render_marks_servers_that_do_not_answer() -> None:
    snap = {
        "lmcache": {"url": "http://127.0.0.1:8080", "up": False},
        "vllm": [{"url": "http://127.0.0.1:8000", "up": False}],
        "last_rounds": {"file": "latest.json", "rounds": []},
    }
    text = status.render(snap)
    assert "LMCache http://127.0.0.1:8080: not answering" in text
    assert "vLLM http://127.0.0.1:8000: not answering" in text
    assert text.endswith("=> no vLLM server answers: start one (scripts/start_vllm.sh or scripts/run.sh)")


@pytest.mark.parametrize(
    ("prompt", "stored", "chunk", "expected"),
    [
        (640, 640, 256, 512),  # two whole chunks; the rest is recomputed
        (640, 640, 32, 639),  # all 20 chunks stored; vLLM still computes the last token
        (3000, 3000, 64, 2944),
        (2100, 2000, 256, 1792),  # a shared prefix: the whole chunks of the stored part
        (1, 1, 32, 0),
    ],
)
def test_hit_tokens_are_whole_stored_chunks_less_the_last_prompt_token(prompt, stored, chunk, expected) -> None:
    from reproduce_vllm_lmcache.experiments.scenarios import hit_tokens

    assert hit_tokens(prompt, stored, chunk) == expected


def test_profile_summary_counts_inclusive_and_self_samples_per_function() -> None:
    from reproduce_vllm_lmcache.report import profile

    lines = [
        'process 7:"python -m vllm serve";thread (0x1);step (vllm/v1/engine/core.py:10);forward (model.py:5) 30',
        'process 7:"python -m vllm serve";thread (0x1);step (vllm/v1/engine/core.py:12);wait (connector.py:9) 10',
        'process 9:"lmcache server";thread (0x2);retrieve (lmcache/transfer.py:3) 60',
        "garbage line",
    ]
    s = profile.summarize(lines)
    assert s.samples == 100
    assert s.inclusive["step (engine/core.py)"] == 40  # two lines of one function merged
    assert s.leaf["retrieve (lmcache/transfer.py)"] == 60 and s.leaf["forward (model.py)"] == 30
    assert s.processes == {"python -m vllm": 40, "lmcache server": 60}
    text = profile.report(s)
    assert " 60.0 %  retrieve (lmcache/transfer.py)" in text and text.startswith("100 on-CPU samples")
