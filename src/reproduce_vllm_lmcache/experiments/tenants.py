"""Tenant isolation through ``cache_salt``: one prompt under salt A (cold), salt A again (must
hit), salt B (must not hit), no salt (must not hit a salted entry) and no salt again (must hit),
judged by vLLM's hit counters (local: its prefix cache; external: LMCache), LMCache's lookup hits
per cache_salt (``lmcache_mp_lookup_hit_tokens_total{cache_salt=...}``) and its L2 loads, with
every answer token-identical. (LMCache's L1 read counter is no isolation signal: with an L2
store, writing a new chunk through to L2 reads it from L1 too.)

Paths (``repro tenants --path``): ``local`` (every step on one vLLM), ``shared`` (the cold
step on the first vLLM, the rest on the second: KV crosses instances only through LMCache),
``l2`` (LMCache's L1 cleared before every step, so a hit can only come from its L2 store).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.experiments.client import Round, Session
from reproduce_vllm_lmcache.experiments.record import with_session
from reproduce_vllm_lmcache.experiments.scenarios import verdict

PATHS = ("local", "shared", "l2")
# (salt, step name, must it hit?)
STEPS: tuple[tuple[str | None, str, bool], ...] = (
    ("tenant-a", "salt A, cold", False),
    ("tenant-a", "salt A again", True),
    ("tenant-b", "salt B", False),
    (None, "no salt", False),
    (None, "no salt again", True),
)


def hit_tokens(r: dict[str, Any]) -> int:
    return int(r["vllm_local_hit_tokens"]) + int(r["vllm_external_hit_tokens"])


LOOKUP_HITS = "lmcache_mp_lookup_hit_tokens_total"


def lmcache_found(r: dict[str, Any]) -> dict[str, float]:
    """LMCache's lookup hit tokens during the round, per cache_salt ("" = none)."""
    return {k: v for k, v in r.get("lmcache_lookup_hits_by_salt", {}).items() if v}


def checks(rounds: list[dict[str, Any]], path: str, lmcache: bool) -> dict[str, bool]:
    """The verdicts of one path's five rounds (in STEPS order); pure, unit-tested. ``lmcache``:
    the rounds carry LMCache's lookup hits by salt."""
    if len(rounds) != len(STEPS):
        raise ValueError(f"expected {len(STEPS)} rounds, got {len(rounds)}")
    out: dict[str, bool] = {}
    for (salt, name, must_hit), r in zip(STEPS, rounds, strict=True):
        found = lmcache_found(r)
        if must_hit:
            out[f"{name}: hits"] = hit_tokens(r) > 0
            if lmcache:
                out[f"{name}: LMCache found it under its own salt only"] = set(found) == {salt or ""}
        else:
            out[f"{name}: no hit"] = hit_tokens(r) == 0 and int(r["lmcache_l2_loaded_chunks"]) == 0
            if lmcache:
                out[f"{name}: LMCache found nothing"] = not found
    if path == "l2":
        out["salt A again: served from L2"] = int(rounds[1]["lmcache_l2_loaded_chunks"]) > 0
    out["every answer token-identical"] = all(r["output_tokens"] == rounds[0]["output_tokens"] for r in rounds)
    return out


def lookup_hits(session: Session) -> dict[str, float]:
    from reproduce_vllm_lmcache.servers import metrics

    if not session.settings.connector:
        return {}
    text = session.client.get(f"{session.settings.lmcache_http_url}/metrics", timeout=10).text
    return metrics.by_label(text, LOOKUP_HITS, "cache_salt")


def run(sessions: list[Session], path: str, tokens: int, seed: str, timeout: float) -> dict[str, Any]:
    from reproduce_vllm_lmcache.servers import lmcache_api

    for s in sessions:
        s.warmup()
    ids = sessions[0].prompt(tokens, seed)
    rounds: list[Round] = []
    found_by_salt: list[dict[str, float]] = []
    for k, (salt, name, _) in enumerate(STEPS):
        session = sessions[0] if k == 0 or len(sessions) == 1 else sessions[1]
        if path == "l2" and k:
            lmcache_api.clear_l1(session.client, session.settings.lmcache_http_url)
        before = lookup_hits(session)
        r = session.round(f"{name}@{session.settings.vllm_port}", f"p{tokens}", ids, timeout, salt=salt)
        after = lookup_hits(session)
        rounds.append(r)
        found_by_salt.append({k: after[k] - before.get(k, 0.0) for k in after})
    dicts = [{**r.as_dict(), "lmcache_lookup_hits_by_salt": f} for r, f in zip(rounds, found_by_salt, strict=True)]
    found = checks(dicts, path, sessions[0].settings.connector)
    for name, ok in found.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}", flush=True)
    detail = ", ".join(f"{STEPS[k][1]}: {hit_tokens(r.as_dict())} hit tokens" for k, r in enumerate(rounds))
    result = verdict(f"tenants {path}", all(found.values()), detail, rounds)
    result.update(rounds=dicts, path=path, checks=found, steps=[{"salt": s, "step": n, "must_hit": h} for s, n, h in STEPS])
    return result


def main(args: argparse.Namespace) -> int:
    """``repro tenants --path P``: the five salted rounds on the running servers."""
    from reproduce_vllm_lmcache.experiments.shared import second_session
    from reproduce_vllm_lmcache.servers.settings import KnobError

    tokens = knobs.Prompts.of("tenants").tokens
    timeout = knobs.Requests.from_env().timeout_s
    seed = f"tenants-{args.path}-{time.time_ns()}"

    def go(first: Session) -> dict[str, Any]:
        if args.path != "local" and not first.settings.connector:
            raise KnobError(f"--path {args.path} needs LMCache (REPRO_CONNECTOR=1)")
        if args.path == "l2" and first.settings.l2 == "none":
            raise KnobError("--path l2 needs REPRO_L2=disk or redis")
        if args.path != "shared":
            return run([first], args.path, tokens, seed, timeout)
        second = second_session(first, knobs.SecondVllm.from_env().port)
        try:
            return run([first, second], args.path, tokens, seed, timeout)
        finally:
            second.close()

    return with_session(go, args.run_dir, f"tenants-{args.label or args.path}.json")
