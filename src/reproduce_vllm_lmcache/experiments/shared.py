"""Two vLLM instances on one LMCache server: what one instance prefilled is a hit on the other."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Any

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.experiments.client import Session
from reproduce_vllm_lmcache.experiments.record import with_session
from reproduce_vllm_lmcache.experiments.scenarios import full_chunks, verdict


def run(first: Session, second: Session, tokens: int, seed: str, timeout: float) -> dict[str, Any]:
    """A prompt cold on the first instance, then on the second; and another the other way round."""
    want = full_chunks(tokens, first.settings.chunk_size)
    first.warmup()
    second.warmup()
    results = []
    for a, b, tag in ((first, second, "1to2"), (second, first, "2to1")):
        ids = a.prompt(tokens, f"{seed}-{tag}")
        label = f"p{tokens}-{tag}"
        cold = a.round(f"cold@{a.settings.vllm_port}", label, ids, timeout)
        warm = b.round(f"warm@{b.settings.vllm_port}", label, ids, timeout)
        ok = (
            cold.vllm_external_hit_tokens == 0
            and cold.lmcache_l1_write_chunks > 0
            and warm.vllm_external_hit_tokens == want
            and warm.lmcache_l1_read_chunks == -(-want // a.settings.chunk_size)
            and warm.output_tokens == cold.output_tokens
        )
        results.append((ok, cold, warm))
        print(
            f"  {'ok  ' if ok else 'FAIL'} prefilled on :{a.settings.vllm_port}, "
            f"{warm.vllm_external_hit_tokens}/{want} tokens hit on :{b.settings.vllm_port}, "
            f"TTFT {cold.ttft_s:.3f} -> {warm.ttft_s:.3f} s, "
            f"{'same answer' if warm.output_tokens == cold.output_tokens else 'DIFFERENT answer'}",
            flush=True,
        )
    detail = "; ".join(
        f"{c.name} {c.ttft_s:.3f} s -> {w.name} {w.ttft_s:.3f} s ({w.vllm_external_hit_tokens} hit tokens)" for _, c, w in results
    )
    rounds = [r for _, c, w in results for r in (c, w)]
    return verdict("two vLLM instances, one LMCache", all(ok for ok, _, _ in results), detail, rounds)


def second_session(first: Session, second_port: int) -> Session:
    """A session with the second instance (same knobs, other port)."""
    return Session(replace(first.settings, vllm_port=second_port))


def main(args: argparse.Namespace) -> int:
    """``repro shared``: a prompt prefilled on one vLLM instance is a hit on the second."""
    tokens = knobs.Prompts.of("shared").tokens
    timeout = knobs.Requests.from_env().timeout_s
    port = knobs.SecondVllm.from_env().port

    def both(first: Session) -> dict[str, Any]:
        second = second_session(first, port)
        try:
            return run(first, second, tokens, f"shared-{time.time_ns()}", timeout)
        finally:
            second.close()

    return with_session(both, args.run_dir, "shared.json")
