"""repro account: the per-stage account of warm requests from a run's records."""

from __future__ import annotations

from reproduce_vllm_lmcache.report import account

LOG = """\x1b[32m[t] LMCache INFO:\x1b[0m Stored 2944 tokens in 0.100 seconds (x.py:1)
\x1b[32m[t] LMCache INFO:\x1b[0m Retrieved 2944 tokens in 0.050 seconds (x.py:2)
\x1b[32m[t] LMCache DEBUG:\x1b[0m RETRIEVE cmpl-1 stages: keys=0.7ms setup=1.9ms copy=46.6ms events=0.2ms \x1b[3m(x.py:3)
\x1b[32m[t] LMCache INFO:\x1b[0m Retrieved 6976 tokens in 0.118 seconds (x.py:2)
"""


def rnd(name: str, tokens: int, read: int, hit: int, queue: float) -> dict[str, object]:
    return {
        "name": name,
        "prompt_tokens": tokens,
        "ttft_s": 0.7,
        "vllm_server_ttft_s": 0.68,
        "vllm_queue_s": queue,
        "vllm_prefill_s": 0.58,
        "vllm_lookup_s": 0.012,
        "lmcache_l1_read_chunks": read,
        "vllm_external_hit_tokens": hit,
        "vllm_local_hit_tokens": 0,
    }


def test_each_warm_round_gets_its_own_retrieve_and_stages() -> None:
    rounds = [
        rnd("cold", 3000, 0, 0, 0.01),
        rnd("warm", 3000, 46, 2944, 0.069),
        rnd("cold", 7000, 0, 0, 0.01),
        rnd("warm", 7000, 109, 6976, 0.137),
    ]
    first, second = account.accounts(rounds, LOG)
    assert (first.tokens, first.tail_tokens, first.retrieve_s) == (3000, 56, 0.05)
    assert first.stages_ms == {"keys": 0.7, "setup": 1.9, "copy": 46.6, "events": 0.2}
    assert abs(first.handoff_s - (0.069 - 0.012 - 0.05)) < 1e-9
    assert abs(first.frontend_s - 0.02) < 1e-9
    assert (second.retrieve_s, second.stages_ms) == (0.118, {})
    assert "| 7000 | 24 |" in account.table([first, second])


def test_a_warm_round_without_lmcache_has_no_retrieve() -> None:
    (apc,) = account.accounts([rnd("warm", 3000, 0, 0, 0.004)], LOG)
    assert apc.retrieve_s is None and apc.handoff_s is None and apc.tail_tokens == 3000
