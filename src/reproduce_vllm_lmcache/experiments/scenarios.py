"""Scenarios beyond the repeated prompt, each with a verdict from the servers' counters.

Run against a vLLM with the connector and APC off, after the matrix's cold/warm rounds of the
same seed (so the long prompt is already stored in LMCache); the --apc ones against a vLLM with
both its prefix cache and the connector.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.experiments.client import Round, Session


def hit_tokens(prompt_tokens: int, stored_tokens: int, chunk: int) -> int:
    """Tokens LMCache serves to a prompt whose first ``stored_tokens`` were stored before: their
    whole chunks, less the last prompt token, which vLLM always computes."""
    return max(0, min(stored_tokens // chunk * chunk, prompt_tokens - 1))


def full_chunks(tokens: int, chunk: int) -> int:
    """Tokens LMCache serves when the same prompt of ``tokens`` comes again."""
    return hit_tokens(tokens, tokens, chunk)


def verdict(name: str, ok: bool, detail: str, rounds: list[Round]) -> dict[str, Any]:
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
    return {"scenario": name, "passed": ok, "detail": detail, "rounds": [r.as_dict() for r in rounds]}


def negative(session: Session, length: int, seed: str, timeout: float) -> dict[str, Any]:
    """An unrelated prompt of the same length must miss."""
    r = session.round("unrelated", f"p{length}-unrelated", session.prompt(length, f"{seed}-unrelated"), timeout)
    ok = r.lmcache_l1_read_chunks == 0 and r.vllm_external_hit_tokens == 0
    return verdict("negative", ok, f"{r.lmcache_l1_read_chunks} chunks read, {r.vllm_external_hit_tokens} hit tokens (want 0, 0)", [r])


def partial_prefix(session: Session, stored: list[int], shared: int, seed: str, timeout: float) -> dict[str, Any]:
    """A stored prompt's first ``shared`` tokens plus another question: exactly the full chunks
    of the shared part hit, the rest is computed."""
    question = session.tokenize(f"\n\nQuestion ({seed}): which words repeat most often here? List three.\nAnswer:")
    ids = stored[:shared] + question
    r = session.round("partial", f"p{len(ids)}-shared{shared}", ids, timeout)
    want = hit_tokens(len(ids), shared, session.settings.chunk_size)
    ok = r.vllm_external_hit_tokens == want and r.lmcache_l1_read_chunks == want // session.settings.chunk_size
    detail = f"{r.vllm_external_hit_tokens} of {len(ids)} tokens hit, {r.lmcache_l1_read_chunks} chunks read (want {want} = whole chunks of the {shared} shared tokens)"
    return verdict("partial prefix", ok, detail, [r])


def multi_turn_chat(session: Session, seed: str, timeout: float) -> dict[str, Any]:
    """A growing conversation through /v1/chat/completions: each turn hits the earlier ones."""
    from reproduce_vllm_lmcache.experiments.prompts import body_text

    messages = [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Read this report and remember it.\n\n" + body_text(f"{seed}-chat", 700)},
    ]
    rounds = []
    for turn, follow_up in enumerate(("Name its main topic.", "Which places does it mention?", "Summarise it in five words."), 1):
        if turn > 1:
            messages += [{"role": "assistant", "content": rounds[-1].output_text}, {"role": "user", "content": follow_up}]
        rounds.append(session.chat_round(f"turn{turn}", "chat", list(messages), timeout))
    chunk = session.settings.chunk_size
    checks = [later.vllm_external_hit_tokens >= full_chunks(earlier.prompt_tokens, chunk) > 0 for earlier, later in zip(rounds, rounds[1:])]
    detail = ", ".join(f"turn {i + 1}: {r.prompt_tokens} prompt tokens, {r.vllm_external_hit_tokens} hit" for i, r in enumerate(rounds))
    return verdict(
        "multi-turn chat",
        all(checks) and rounds[0].lmcache_l1_write_chunks > 0,
        detail + " (each turn hits >= the whole chunks of the previous prompt)",
        rounds,
    )


# The LMCache patches these scenarios show the effect of (their "before" is REPRO_PATCHES=upstream).
SKIP_PATCH = "0007-apc-covered-prompt-not-looked-up"
RELEASED_PATCH = "0008-released-locks-not-counted-as-reads"
# Whole chunks of the prefix-cache scenarios' prompt (it has ten tokens more).
APC_CHUNKS = 10


def apc_covered(session: Session, ids: list[int], timeout: float, skip: bool) -> dict[str, Any]:
    """With vLLM's prefix cache on: ``ids`` (APC_CHUNKS whole chunks and a few tokens more),
    sent twice. The second time vLLM's own cache holds every whole chunk a lookup could report,
    so (patch 0007) the connector sends LMCache no lookup: no locks, nothing counted as read."""
    chunk = session.settings.chunk_size
    cold = session.round("cold", f"p{len(ids)}-apc", ids, timeout)
    warm = session.round("warm", f"p{len(ids)}-apc", ids, timeout)
    want_lookups = 0 if skip else 1
    ok = (
        cold.lmcache_l1_write_chunks == APC_CHUNKS
        and warm.vllm_local_hit_tokens == APC_CHUNKS * chunk
        and warm.vllm_external_hit_tokens == 0
        and warm.lmcache_lookups == want_lookups
        and (warm.lmcache_l1_read_chunks + warm.lmcache_l1_released_chunks == 0 or not skip)
    )
    detail = (
        f"warm: {warm.vllm_local_hit_tokens} tokens from vLLM's prefix cache, LMCache lookups {warm.lmcache_lookups}, "
        f"chunks read {warm.lmcache_l1_read_chunks}, released {warm.lmcache_l1_released_chunks} "
        f"(want {APC_CHUNKS * chunk}, {want_lookups} lookups{', 0 read, 0 released' if skip else ''}; patch {SKIP_PATCH} "
        f"{'in effect' if skip else 'left out'})"
    )
    return verdict("prefix cache covers the prompt", ok, detail, [cold, warm])


def apc_partial(session: Session, stored: list[int], seed: str, timeout: float, released: bool) -> dict[str, Any]:
    """With vLLM's prefix cache on: the whole chunks of apc_covered's prompt (``stored``) and 200
    new tokens. vLLM holds those chunks, a lookup could report more, so the connector looks up
    (from token 0: it locks those chunks too, and releases them unread); LMCache has nothing
    beyond them, so nothing is read (patch 0008: the releases are not counted as reads)."""
    shared = APC_CHUNKS * session.settings.chunk_size
    ids = stored[:shared] + session.prompt(200, seed=f"{seed}-apc-tail")
    r = session.round("partial", f"p{len(ids)}-apc-shared{shared}", ids, timeout)
    ok = (
        r.vllm_local_hit_tokens == shared
        and r.vllm_external_hit_tokens == 0
        and r.lmcache_lookups == 1
        and (r.lmcache_l1_read_chunks == 0 or not released)
    )
    detail = (
        f"{r.vllm_local_hit_tokens} of {len(ids)} tokens from vLLM's prefix cache, LMCache lookups {r.lmcache_lookups}, "
        f"chunks read {r.lmcache_l1_read_chunks}, released unread {r.lmcache_l1_released_chunks} "
        f"(want {shared}, 1 lookup{', 0 read' if released else ''}; patch {RELEASED_PATCH} {'in effect' if released else 'left out'})"
    )
    return verdict("prefix cache covers part of the prompt", ok, detail, [r])


def run_apc(session: Session, seed: str, timeout: float) -> list[dict[str, Any]]:
    """The scenarios of a vLLM with both its prefix cache and the connector."""
    from reproduce_vllm_lmcache.workspace import patches

    mode = session.settings.patches
    stored = session.prompt(APC_CHUNKS * session.settings.chunk_size + 10, seed=f"{seed}-apc")
    return [
        apc_covered(session, stored, timeout, skip=patches.in_effect("LMCache", SKIP_PATCH, mode)),
        apc_partial(session, stored, seed, timeout, released=patches.in_effect("LMCache", RELEASED_PATCH, mode)),
    ]


def run_all(session: Session, seed: str, timeout: float) -> list[dict[str, Any]]:
    length = max(session.settings.prompt_tokens)
    stored = session.prompt(length, seed=f"{seed}-p{length}")  # the matrix's long prompt
    return [
        negative(session, length, seed, timeout),
        partial_prefix(session, stored, shared=length * 2 // 3, seed=seed, timeout=timeout),
        multi_turn_chat(session, seed, timeout),
    ]


def main(args: argparse.Namespace) -> int:
    """``repro scenarios``: negative, partial-prefix and multi-turn chat scenarios on the running
    servers; --apc: the prefix-cache scenarios (a vLLM with its prefix cache and the connector)."""
    from reproduce_vllm_lmcache.servers.settings import Settings

    session = Session(Settings.from_env())
    try:
        found = (run_apc if args.apc else run_all)(session, args.seed, knobs.Requests.from_env().timeout_s)
    finally:
        session.close()
    args.output.write_text(json.dumps({"scenarios": found}, indent=2) + "\n")
    return 0 if all(s["passed"] for s in found) else 1
