"""The cold/warm rounds (scripts/run.sh, e2e.sh, the matrix): per prompt length a cold then a
warm request on the running servers, recorded with the verdicts from both servers' metrics; and
the warm-up request the start scripts send before they report vLLM ready."""

from __future__ import annotations

import argparse
import time

from reproduce_vllm_lmcache import knobs


def main(args: argparse.Namespace) -> int:
    """``repro e2e``: cold then warm requests per prompt length, proven by both servers' metrics."""
    from reproduce_vllm_lmcache.experiments import client
    from reproduce_vllm_lmcache.report import judging, results
    from reproduce_vllm_lmcache.servers.settings import Settings

    settings = Settings.from_env()
    run_dir = args.run_dir or results.new_run_dir(args.label)
    run_dir.mkdir(parents=True, exist_ok=True)
    nonce = args.seed or f"{time.time_ns()}"
    print(f"e2e: vLLM {settings.vllm_url}, LMCache {settings.lmcache_http_url}, prompts {list(settings.prompt_tokens)} tokens")
    session = client.Session(settings)
    try:
        session.warmup()
        rounds = []
        for length in settings.prompt_tokens:
            label = f"p{length}"
            for repeat in range(args.repeats):
                # Each repeat a prompt of its own, so that every first round is cold.
                ids = session.prompt(length, seed=f"{nonce}-{label}" + (f"-r{repeat}" if repeat else ""))
                rounds += [session.round(name, label, ids, knobs.Requests.from_env().timeout_s) for name in args.rounds.split(",")]
    finally:
        session.close()
    for r in rounds:
        r.configuration = args.configuration
    round_dicts = [r.as_dict() for r in rounds]
    verdicts = judging.verdicts(round_dicts, knobs.Requests.from_env().tie_tolerance)
    data = {
        "config": {
            "knobs": knobs.resolved(),
            **settings.as_dict(),
            "served_model": session.model,
            "prompt_seed": nonce,
            **results.environment(),
        },
        "rounds": round_dicts,
        "verdicts": verdicts,
    }
    path = results.write(run_dir, args.output, data, latest=args.output == "run.json")
    print()
    print(judging.table(round_dicts))
    if not verdicts:
        print(f"\nrecorded {path}")
        return 0
    print()
    # With vLLM's own prefix cache on, a warm request is served by it, not by LMCache.
    lmcache_judged = settings.connector and not settings.prefix_caching
    print("\n".join(judging.verdict_lines(verdicts, lmcache=lmcache_judged)))
    print(f"\nrecorded {path}" + (" (and results/latest.json)" if args.output == "run.json" else ""))
    ok = judging.passed(verdicts) if lmcache_judged else all(judging.same_answer(v) for v in verdicts)
    return 0 if ok else 1


def warmup(args: argparse.Namespace) -> int:
    """``repro warmup``: before a start script reports vLLM ready, the first request's one-off work."""
    from reproduce_vllm_lmcache.experiments import client
    from reproduce_vllm_lmcache.servers.settings import Settings

    session = client.Session(Settings.from_env())
    try:
        print(f"vllm: warm-up request (logprobs, below one LMCache chunk) took {session.prime():.1f} s")
    finally:
        session.close()
    return 0
