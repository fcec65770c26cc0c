"""``repro l2 | eviction | shared | status | lmcache-clear``: beyond one cache (L2 tier, L1
eviction, two vLLM instances) and the one-screen answer to "did the cache help?"."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable

from . import config


def _record(run_dir: Path | None, name: str, result: dict[str, Any], settings_dict: dict[str, Any]) -> int:
    from . import results

    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        data = {"config": {"knobs": config.resolved(), **settings_dict, **results.environment()}, **result}
        print(f"recorded {results.write(run_dir, name, data, latest=False)}")
    return 0 if result["passed"] else 1


def _with_session(run: Callable[[Any], dict[str, Any]], run_dir: Path | None, name: str) -> int:
    from .client import Session
    from .settings import Settings

    settings = Settings.from_env()
    session = Session(settings)
    try:
        result = run(session)
    finally:
        session.close()
    return _record(run_dir, name, result, settings.as_dict())


def cmd_l2(args: argparse.Namespace) -> int:
    from . import l2
    from .settings import KnobError, Settings

    settings = Settings.from_env()
    if settings.l2 == "none":
        raise KnobError("REPRO_L2=none: the L2 scenario needs REPRO_L2=redis or disk (scripts/l2.sh sets it)")
    tokens = int(config.get("REPRO_L2_PROMPT_TOKENS"))
    timeout = float(config.get("REPRO_REQUEST_TIMEOUT"))
    seed = f"l2-{settings.l2}-{time.time_ns()}"
    return _with_session(lambda s: l2.run(s, tokens, seed, timeout), args.run_dir, f"l2-{settings.l2}.json")


def cmd_eviction(args: argparse.Namespace) -> int:
    from . import eviction
    from .settings import KnobError, Settings

    policy = Settings.from_env().eviction_policy
    tokens = int(config.get("REPRO_EVICTION_PROMPT_TOKENS"))
    prompts = int(config.get("REPRO_EVICTION_PROMPTS"))
    if prompts < 5:
        raise KnobError(f"REPRO_EVICTION_PROMPTS={prompts}: the stream needs at least 5 prompts (P1..P4, P1 again, P5)")
    timeout = float(config.get("REPRO_REQUEST_TIMEOUT"))
    seed = f"evict-{time.time_ns()}"
    return _with_session(lambda s: eviction.run(s, policy, tokens, prompts, seed, timeout), args.run_dir, f"eviction-{policy}.json")


def cmd_shared(args: argparse.Namespace) -> int:
    from . import shared

    tokens = int(config.get("REPRO_SHARED_PROMPT_TOKENS"))
    timeout = float(config.get("REPRO_REQUEST_TIMEOUT"))
    port = int(config.get("REPRO_SECOND_VLLM_PORT"))

    def run(first: Any) -> dict[str, Any]:
        second = shared.second_session(first, port)
        try:
            return shared.run(first, second, tokens, f"shared-{time.time_ns()}", timeout)
        finally:
            second.close()

    return _with_session(run, args.run_dir, "shared.json")


def cmd_status(args: argparse.Namespace) -> int:
    from . import status
    from .settings import Settings

    settings = Settings.from_env()
    ports = [settings.vllm_port, int(config.get("REPRO_SECOND_VLLM_PORT"))]
    snapshot = status.gather(settings, ports, config.path("REPRO_RESULTS_DIR") / "latest.json")
    print(json.dumps(snapshot, indent=2) if args.json else status.render(snapshot))
    return 0


def cmd_lmcache_clear(args: argparse.Namespace) -> int:
    import httpx

    from . import lmcache_api
    from .settings import Settings

    url = Settings.from_env().lmcache_http_url
    with httpx.Client() as client:
        lmcache_api.clear_l1(client, url)
    print(f"cleared the L1 of the LMCache server at {url}")
    return 0


def cmd_profile_report(args: argparse.Namespace) -> int:
    from . import profile

    found = sorted(args.run_dir.glob("*.pyspy.txt"))
    if not found:
        raise FileNotFoundError(f"no *.pyspy.txt in {args.run_dir}")
    for path in found:
        print(f"=== {path.name.split('.')[0]} ({path})")
        print(profile.report(profile.summarize(path.read_text().splitlines())))
    return 0


def register(sub: Any) -> None:
    for name, func, text in (
        ("l2", cmd_l2, "store a prompt in L1 and L2, clear L1, serve the warm request from L2 (REPRO_L2)"),
        ("eviction", cmd_eviction, "a prompt stream through a small L1: hits predicted by the policy vs observed"),
        ("shared", cmd_shared, "a prompt prefilled on one vLLM instance is a hit on the second"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--run-dir", type=Path, help="record the result as JSON into this folder")
        p.set_defaults(func=func)
    p = sub.add_parser("status", help="what is cached, hit rates and the last requests, from the servers' endpoints")
    p.add_argument("--json", action="store_true", help="the raw snapshot as JSON")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("profile-report", help="top functions of the py-spy profiles in a run folder")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=cmd_profile_report)
    sub.add_parser("lmcache-clear", help="drop everything in the running LMCache server's L1").set_defaults(func=cmd_lmcache_clear)
