"""``repro preflight NAME``: the checks made before anything starts.

For a server (lmcache, vllm, redis, coordinator): its knobs, ports and memory (servers/cli.py),
run by lib.sh right before that server starts. For a script (bench, eviction, l2, matrix, ...):
every knob that script reads, parsed into its typed object and checked against the servers'
knobs, run first thing by the script, so that a bad value is refused before any server starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.knobs import KnobError
from reproduce_vllm_lmcache.servers.settings import EVICTION_POLICIES, Settings

SERVERS = ("lmcache", "vllm", "redis", "coordinator")


def _bench(settings: Settings) -> str:
    b = knobs.Bench.from_env()
    chunks = knobs.numbers("REPRO_BENCH_CHUNK_SIZES", kind=int)
    limit = knobs.integer("REPRO_BENCH_MAX_MODEL_LEN", minimum=16)
    too_long = [n for n in b.prompt_tokens if n + settings.max_tokens > limit]
    if too_long:
        raise KnobError(f"REPRO_BENCH_PROMPT_TOKENS {too_long} do not fit REPRO_BENCH_MAX_MODEL_LEN={limit}")
    return f"prompts {list(b.prompt_tokens)} tokens x {b.repeats}, chunk sizes {chunks}"


def _eviction(settings: Settings) -> str:
    e = knobs.Eviction.from_env()
    policies = knobs.names("REPRO_EVICTION_POLICIES", known=EVICTION_POLICIES)
    l1 = knobs.number("REPRO_EVICTION_L1_SIZE_GB")
    return f"{e.prompts} prompts of {e.prompt_tokens} tokens through an L1 of {l1:g} GiB, policies {', '.join(policies)}"


def _l2(settings: Settings) -> str:
    kinds = knobs.names("REPRO_L2_KINDS", known=("redis", "disk"))
    return f"{knobs.Prompts.of('l2').tokens}-token prompt through L2 {', '.join(kinds)}"


def _shared(settings: Settings) -> str:
    port = knobs.SecondVllm.from_env().port
    if port in (settings.vllm_port, settings.lmcache_port, settings.lmcache_http_port):
        raise KnobError(f"REPRO_SECOND_VLLM_PORT={port}: taken by another of the workspace's servers")
    return f"{knobs.Prompts.of('shared').tokens}-token prompt across vLLM on {settings.vllm_port} and {port}"


def _tenants(settings: Settings) -> str:
    setups = knobs.names("REPRO_TENANTS_SETUPS", known=("apc", "lmcache", "shared"))
    if "shared" in setups:
        knobs.SecondVllm.from_env()
    return f"{knobs.Prompts.of('tenants').tokens}-token prompt, setups {', '.join(setups)}"


def _fuzz(settings: Settings) -> str:
    fuzz = knobs.Fuzz.from_env()
    return f"schemathesis on {', '.join(fuzz.targets)}: {fuzz.examples} examples per operation, {fuzz.max_time_s} s each"


def _matrix(settings: Settings) -> str:
    from reproduce_vllm_lmcache.report import matrix

    steps = matrix.plan(knobs.names("REPRO_MATRIX_CONFIGURATIONS", known=tuple(s.name for s in matrix.STEPS)))
    return "\n".join(s.line() for s in steps)


def _startup(settings: Settings) -> str:
    names = knobs.names("REPRO_STARTUP_CONFIGURATIONS", known=("preload", "fast", "upstream"))
    repeats = knobs.integer("REPRO_STARTUP_REPEATS")
    return f"{', '.join(names)} x {repeats}, first requests of {knobs.integer('REPRO_STARTUP_PROMPT_TOKENS')} tokens"


def _soak(settings: Settings) -> str:
    from reproduce_vllm_lmcache.experiments import soak
    from reproduce_vllm_lmcache.servers import prometheus

    return soak.checked(prometheus.find_binary(knobs.Prometheus.from_env().binary))


def _workload(settings: Settings) -> str:
    from reproduce_vllm_lmcache.experiments import workload

    return "\n".join(workload.checked_plan())  # against the sweep's own server knobs, not the defaults


def _ab(settings: Settings) -> str:
    from reproduce_vllm_lmcache.experiments import ab

    plan = ab.Plan()
    return (
        f"{plan.measure}, {plan.min_blocks}-{plan.max_blocks} blocks (+{plan.warmup_blocks} warm-up) within {plan.max_seconds:g} s, "
        f"stop at a {plan.target_width:.1%} interval of {', '.join(plan.stop_metrics)}"
    )


def _prompt(name: str) -> Callable[[Settings], str]:
    return lambda settings: f"{knobs.Prompts.of(name).tokens}-token prompt"


SCRIPTS: dict[str, Callable[[Settings], str]] = {
    "bench": _bench,
    "eviction": _eviction,
    "l2": _l2,
    "shared": _shared,
    "tenants": _tenants,
    "fuzz": _fuzz,
    "matrix": _matrix,
    "startup": _startup,
    "soak": _soak,
    "workload": _workload,
    "trace": _prompt("trace"),
    "nodes": _prompt("nodes"),
    "ab": _ab,
    "dev": _ab,
}


def main(args: argparse.Namespace) -> int:
    if args.name in SERVERS:
        from reproduce_vllm_lmcache.servers.cli import cmd_preflight

        args.server = args.name
        return cmd_preflight(args)
    settings = Settings.from_env()
    knobs.Requests.from_env()
    found = SCRIPTS[args.name](settings)
    print(found if args.plan else f"{args.name}: knobs ok: {found}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preflight", help="check a server's knobs and ports, or every knob of a script, before anything starts")
    p.add_argument("name", choices=(*SERVERS, *SCRIPTS), help="a server (checked as it starts) or a script (checked first)")
    p.add_argument("--plan", action="store_true", help="print only what the script will run (matrix: one step per line)")
    p.set_defaults(func=main)
