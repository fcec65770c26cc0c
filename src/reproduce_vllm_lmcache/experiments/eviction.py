"""Eviction scenario: a small L1, a stream of distinct prompts, then one probe per prompt. Every
request's hit is predicted by a model of LMCache's L1 (below) fed with sizes measured on the
server, and compared with the hit vLLM reports.

The model follows LMCache 0.5.6's L1: a request stores its missing chunks as one allocation
(all or nothing); an eviction tick runs while usage >= the trigger watermark and evicts
max(1, int(ratio * tracked chunks)) chunks in policy order; LRU keeps a recency list (a hit
touches the chunks it reads, in order); noop never evicts. A lookup serves the longest prefix of
resident chunks.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.experiments.client import Session
from reproduce_vllm_lmcache.experiments.record import with_session
from reproduce_vllm_lmcache.experiments.scenarios import hit_tokens, verdict
from reproduce_vllm_lmcache.servers import lmcache_api
from reproduce_vllm_lmcache.servers.settings import Settings

POLICIES = ("LRU", "noop")


@dataclass
class L1Model:
    policy: str
    capacity_bytes: int
    chunk_bytes: int
    watermark: float = 0.8
    ratio: float = 0.2
    order: list[tuple[str, int]] = field(default_factory=list)  # least recently used first

    def resident_prefix(self, prompt: str, chunks: int) -> int:
        present = set(self.order)
        n = 0
        while n < chunks and (prompt, n) in present:
            n += 1
        return n

    def request(self, prompt: str, chunks: int) -> int:
        """One request for ``chunks`` whole chunks of ``prompt``: returns the chunks that hit."""
        hit = self.resident_prefix(prompt, chunks)
        if self.policy == "LRU" and hit:
            touched = [(prompt, i) for i in range(hit)]
            self.order = [k for k in self.order if k not in touched] + touched
        missing = [(prompt, i) for i in range(chunks) if (prompt, i) not in set(self.order)]
        if (len(self.order) + len(missing)) * self.chunk_bytes <= self.capacity_bytes:
            self.order += missing
        self.evict()
        return hit

    def evict(self) -> None:
        if self.policy == "noop":
            return
        while self.order and len(self.order) * self.chunk_bytes >= self.watermark * self.capacity_bytes:
            del self.order[: max(1, int(len(self.order) * self.ratio))]


def stream(prompts: int) -> list[str]:
    """The request order: P1..P4, P1 again (a hit that makes it recently used), then P5..Pn."""
    names = [f"P{i}" for i in range(1, prompts + 1)]
    return names[:4] + ["P1"] + names[4:]


def probe_order(model: L1Model, names: list[str], chunks: int) -> list[str]:
    """Prompts predicted fully resident first (their probes hit and evict nothing), then the rest."""
    full = [n for n in names if model.resident_prefix(n, chunks) == chunks]
    return full + [n for n in names if n not in full]


def policy_shown(policy: str, resident: dict[str, int], chunks: int, evicted: int, last: str) -> tuple[bool, str]:
    """Whether the run shows what sets the policy apart (needs a stream that overflows L1)."""
    if policy == "LRU":
        ok = evicted > 0 and resident["P1"] == chunks and resident["P2"] < chunks
        return ok, "LRU: P1, used again, outlived the older P2" if ok else "LRU not shown: L1 did not overflow, or P1 was evicted before P2"
    ok = evicted == 0 and resident[last] < chunks
    return ok, f"noop: nothing evicted, {last} found L1 full" if ok else f"noop not shown: evictions happened or {last} still fit"


def run(session: Session, policy: str, tokens: int, prompts: int, seed: str, timeout: float) -> dict[str, Any]:
    s = session.settings
    url = s.lmcache_http_url
    ids = {f"P{i}": session.prompt(tokens, f"{seed}-{policy}-P{i}") for i in range(1, prompts + 1)}
    chunks = tokens // s.chunk_size  # whole chunks stored per prompt
    session.warmup()
    lmcache_api.clear_l1(session.client, url)  # the stream starts from an empty L1
    state = lmcache_api.status(session.client, url)
    capacity = int(lmcache_api.l1(state)["memory_total_bytes"])
    used_before = int(lmcache_api.l1(state)["memory_used_bytes"])
    model: L1Model | None = None
    rows: list[dict[str, Any]] = []
    rounds = []

    def send(name: str, phase: str) -> None:
        nonlocal model
        r = session.round(phase, name, ids[name], timeout)
        rounds.append(r)
        if model is None:  # the first store measures the bytes per chunk
            l1_state = lmcache_api.l1(lmcache_api.status(session.client, url))
            chunk_bytes = (int(l1_state["memory_used_bytes"]) - used_before) // max(1, r.lmcache_l1_write_chunks)
            controller = lmcache_api.eviction_controller(state)
            model = L1Model(policy, capacity, chunk_bytes, float(controller["trigger_watermark"]), float(controller["eviction_ratio"]))
            print(f"  L1 model: {capacity / 1e6:.1f} MB, {chunk_bytes / 1e6:.2f} MB per chunk, {chunks} chunks per prompt", flush=True)
        predicted = hit_tokens(tokens, model.request(name, chunks) * s.chunk_size, s.chunk_size)
        rows.append(
            {
                "phase": phase,
                "prompt": name,
                "predicted_hit_tokens": predicted,
                "hit_tokens": r.vllm_external_hit_tokens,
                "written_chunks": r.lmcache_l1_write_chunks,
                "evicted_chunks": r.lmcache_l1_evicted_chunks,
                "ttft_s": r.ttft_s,
                "match": predicted == r.vllm_external_hit_tokens,
            }
        )

    for name in stream(prompts):
        send(name, "stream")
    assert model is not None
    resident = {n: model.resident_prefix(n, chunks) for n in ids}
    print("  predicted after the stream: " + ", ".join(f"{n} {c}/{chunks} chunks" for n, c in resident.items()), flush=True)
    for name in probe_order(model, list(ids), chunks):
        send(name, "probe")
    evicted = sum(r["evicted_chunks"] for r in rows)
    mismatches = [r for r in rows if not r["match"]]
    print(f"  {'prompt':<6} {'phase':<7} {'predicted':>9} {'hit':>6} {'written':>7} {'evicted':>7}")
    for r in rows:
        print(
            f"  {r['prompt']:<6} {r['phase']:<7} {r['predicted_hit_tokens']:>9} {r['hit_tokens']:>6} "
            f"{r['written_chunks']:>7} {r['evicted_chunks']:>7}{'' if r['match'] else '  <- differs'}"
        )
    kept = [n for n, c in resident.items() if c == chunks]
    shown = policy_shown(policy, resident, chunks, evicted, f"P{prompts}")
    detail = (
        f"{policy}: after the stream L1 kept {', '.join(kept) or 'nothing'} whole; {evicted} chunks evicted; "
        f"{len(rows) - len(mismatches)}/{len(rows)} requests hit exactly as predicted; {shown[1]}"
    )
    result = verdict(f"eviction {policy}", not mismatches and shown[0], detail, rounds)
    result.update(
        policy=policy,
        chunks_per_prompt=chunks,
        capacity_bytes=capacity,
        chunk_bytes=model.chunk_bytes,
        resident_after_stream=resident,
        requests=rows,
    )
    return result


def main(args: argparse.Namespace) -> int:
    """``repro eviction``: a prompt stream through a small L1, hits predicted by the policy vs observed."""
    policy = Settings.from_env().eviction_policy
    k = knobs.Eviction.from_env()
    tokens, prompts = k.prompt_tokens, k.prompts
    timeout = knobs.Requests.from_env().timeout_s
    seed = f"evict-{time.time_ns()}"
    return with_session(lambda s: run(s, policy, tokens, prompts, seed, timeout), args.run_dir, f"eviction-{policy}.json")
