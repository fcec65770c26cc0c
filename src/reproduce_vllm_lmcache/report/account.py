"""The per-stage account of each warm request of a run folder: where its time went, from
arrival in vLLM to the first token, from the records that exist (no model of anything).

Sources: the client (TTFT), vLLM's metrics per request (server TTFT, queue, prefill, the
connector's lookup time), LMCache's log ("Retrieved N tokens in X seconds"; with patch
0002-retrieve-stage-timestamps and LMCACHE_LOG_LEVEL=DEBUG, the retrieve's own stages).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

RETRIEVED = re.compile(r"Retrieved (\d+) tokens in ([\d.]+) seconds")
STAGES = re.compile(r"RETRIEVE \S+ stages: ((?:\w+=[\d.]+ms ?)+)")
STAGE = re.compile(r"(\w+)=([\d.]+)ms")


@dataclass(frozen=True)
class Account:
    tokens: int
    tail_tokens: int  # computed by vLLM: not served by any cache
    client_ttft_s: float
    frontend_s: float  # client TTFT minus vLLM's own TTFT: HTTP, tokenizing, streaming
    lookup_s: float  # the connector's LOOKUP round trip (inside queue)
    retrieve_s: float | None  # LMCache's retrieve as it logs it (inside queue)
    handoff_s: float | None  # queue minus lookup and retrieve: scheduler steps, messages
    queue_s: float  # vLLM: arrival to first scheduled for compute (waiting for the KV)
    prefill_s: float  # vLLM: the tail after the hit, and the first token
    stages_ms: dict[str, float]


def parse_log(text: str) -> list[tuple[float, dict[str, float]]]:
    """(retrieve seconds, its stages in ms or {}) per retrieve, in log order."""
    found: list[tuple[float, dict[str, float]]] = []
    for line in text.splitlines():
        if m := RETRIEVED.search(line):
            found.append((float(m.group(2)), {}))
        elif (m := STAGES.search(line)) and found and not found[-1][1]:
            found[-1] = (found[-1][0], {k: float(v) for k, v in STAGE.findall(m.group(1))})
    return found


def accounts(rounds: list[dict[str, Any]], lmcache_log: str) -> list[Account]:
    """One account per warm round; the n-th LMCache retrieve belongs to the n-th round that
    read chunks from LMCache (a run sends one request at a time)."""
    retrieves = iter(parse_log(lmcache_log))
    out = []
    for r in rounds:
        hit = (r.get("lmcache_l1_read_chunks") or 0) > 0
        retrieve, stages = next(retrieves, (None, {})) if hit else (None, {})
        if r["name"] != "warm" or r.get("vllm_queue_s") is None:
            continue
        lookup = r.get("vllm_lookup_s") or 0.0
        out.append(
            Account(
                tokens=r["prompt_tokens"],
                tail_tokens=r["prompt_tokens"] - (r.get("vllm_external_hit_tokens") or 0) - (r.get("vllm_local_hit_tokens") or 0),
                client_ttft_s=r["ttft_s"],
                frontend_s=r["ttft_s"] - r["vllm_server_ttft_s"],
                lookup_s=lookup,
                retrieve_s=retrieve,
                handoff_s=None if retrieve is None else r["vllm_queue_s"] - lookup - retrieve,
                queue_s=r["vllm_queue_s"],
                prefill_s=r["vllm_prefill_s"],
                stages_ms=stages,
            )
        )
    return out


def table(items: list[Account]) -> str:
    def s(v: float | None) -> str:
        return "" if v is None else f"{v:.3f}"

    head = (
        "| tokens | tail tokens | client TTFT | frontend | vLLM queue | of it: lookup | of it: retrieve | of it: hand-offs "
        "| retrieve stages (ms) | tail prefill + first token |\n|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
    )
    rows = [
        f"| {a.tokens} | {a.tail_tokens} | {s(a.client_ttft_s)} | {s(a.frontend_s)} | {s(a.queue_s)} | {s(a.lookup_s)} | "
        f"{s(a.retrieve_s)} | {s(a.handoff_s)} | {' '.join(f'{k} {v:g}' for k, v in a.stages_ms.items())} | "
        f"{s(a.prefill_s)} |"
        for a in items
    ]
    return "\n".join([head, *rows])
