"""``repro ab``: the steps of scripts/ab.sh, an interleaved A/B of two states of the code (or of
two knob sets) measured in one run on one machine.

Design: both arms' servers run side by side (arm B on other ports) and are used in turn, one
request at a time, so that whatever the machine does during the run (a noise burst, a thermal
step, another process) falls on both arms alike. Each block samples both arms in a random order
(experiments/ab_measures.py says what a block measures); the first blocks are thrown away
(one-off costs of fresh servers); sampling stops once every interval of REPRO_AB_STOP_METRICS is
narrower than REPRO_AB_TARGET_WIDTH, or at REPRO_AB_MAX_BLOCKS / REPRO_AB_MAX_SECONDS. The
statistics are report/stats.py's (paired: from the ratios B[i]/A[i]); the table is report/ab.py's.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.experiments import ab_arms, ab_calibrate
from reproduce_vllm_lmcache.experiments.ab_measures import MEASURES, METRICS, Measure
from reproduce_vllm_lmcache.report import ab as ab_report

RESULT_FILE = "ab.json"


class Plan:
    """The A/B's knobs, checked before any server starts."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.measure = knobs.choice("REPRO_AB_MEASURE", tuple(MEASURES), env)
        self.warmup_blocks = knobs.integer("REPRO_AB_WARMUP_BLOCKS", env, minimum=0)
        self.min_blocks = knobs.integer("REPRO_AB_MIN_BLOCKS", env, minimum=3)
        self.max_blocks = knobs.integer("REPRO_AB_MAX_BLOCKS", env, minimum=self.min_blocks)
        self.max_seconds = knobs.number("REPRO_AB_MAX_SECONDS", env)
        self.target_width = knobs.number("REPRO_AB_TARGET_WIDTH", env)
        self.noise = knobs.number("REPRO_NOISE_THRESHOLD", env, positive=False)
        seed = knobs.text("REPRO_AB_SEED", env)
        self.seed = int(seed) if seed.strip() else time.time_ns() % 2**31
        # Independent A/Bs on the same servers, one after the other (the calibration's A/A and
        # planted runs): each with its own blocks, stop and verdicts; warm-up blocks only before the first.
        self.sessions = knobs.integer("REPRO_AB_SESSIONS", env)
        kind = MEASURES[self.measure]
        # Empty: the measure's headline metric (warm TTFT for pairs, throughput for a workload point).
        chosen = knobs.text("REPRO_AB_STOP_METRICS", env).strip()
        self.stop_metrics = knobs.names("REPRO_AB_STOP_METRICS", env, kind.metrics) if chosen else (kind.headline,)
        if self.measure == "workload":
            ab_arms.workload_point(env)


def _settings(arms: dict[str, ab_arms.Arm]) -> dict[str, Any]:
    from reproduce_vllm_lmcache.servers.settings import Settings

    return {name: Settings.from_env(ab_arms.environ(arm)) for name, arm in arms.items()}


def _measure(plan: Plan, arms: dict[str, ab_arms.Arm], run_dir: Path) -> Measure:
    from reproduce_vllm_lmcache.experiments import ab_measures

    settings = _settings(arms)
    if plan.measure == "pairs":
        return ab_measures.Pairs(settings, nonce=f"{plan.seed}-{time.time_ns()}")
    return ab_measures.WorkloadPoint(settings, run_dir / "workload")


def paired_samples(blocks: list[dict[str, Any]], arm: str, metric: str) -> list[float]:
    """The arm's samples of a metric over the measured blocks, in order: sample i of A was taken
    next to sample i of B (the same prompt, the same moment of the machine)."""
    return [x for b in ab_report.measured(blocks) for x in b["samples"][arm]["metrics"][metric]]


def effects(plan_noise: float, blocks: list[dict[str, Any]], metrics: tuple[str, ...], seed: int = 0) -> list[Any]:
    """B against A per metric over the measured (not warm-up) blocks, sample by sample paired."""
    from reproduce_vllm_lmcache.report import stats

    return [
        stats.effect(
            m,
            paired_samples(blocks, "a", m),
            paired_samples(blocks, "b", m),
            plan_noise,
            paired=True,
            higher_is_better=METRICS[m][2],
            seed=seed,
        )
        for m in metrics
    ]


def sample(
    plan: Plan, measure: Measure, on_block: Any = None, seed: int = 0, warmup_blocks: int = 0
) -> tuple[list[dict[str, Any]], str, float]:
    """Blocks until the intervals are narrow enough or a cap is reached: (blocks, why it stopped, seconds)."""
    from reproduce_vllm_lmcache.report import stats

    rng = random.Random(seed)
    blocks: list[dict[str, Any]] = []
    started = time.monotonic()
    total = warmup_blocks + plan.max_blocks
    stopped = f"most blocks ({plan.max_blocks})"
    for index in range(total):
        order = rng.sample(ab_arms.ARMS, 2)
        warmup = index < warmup_blocks
        print(f"ab: block {index + 1}{' (warm-up, not counted)' if warmup else ''}, order {'/'.join(order).upper()}", flush=True)
        block_started = time.monotonic()
        samples = measure.block(order, index, rng)
        block = {
            "index": index,
            "order": order,
            "warmup": warmup,
            "samples": {arm: {"metrics": s.metrics, "checks": s.checks, "detail": s.detail} for arm, s in samples.items()},
            "same_answer": samples["a"].answer == samples["b"].answer,
            "seconds": round(time.monotonic() - block_started, 2),
        }
        blocks.append(block)
        if on_block:
            on_block(blocks)
        measured = index + 1 - warmup_blocks
        if measured < plan.min_blocks:
            continue
        found = effects(plan.noise, blocks, plan.stop_metrics, seed)
        print("ab: " + "; ".join(f"{METRICS[e.metric][0]} B/A {e.ratio:.3f} [{e.low:.3f}, {e.high:.3f}]" for e in found), flush=True)
        if stats.narrow_enough(found, plan.target_width):
            stopped = f"every interval of {', '.join(plan.stop_metrics)} narrower than {plan.target_width:.1%}"
            break
        if time.monotonic() - started > plan.max_seconds:
            stopped = f"time cap ({plan.max_seconds:g} s)"
            break
    return blocks, stopped, time.monotonic() - started


def cmd_arms(args: argparse.Namespace) -> int:
    """Resolve both arms (worktrees made where needed) into the run folder's arms.json."""
    Plan()
    a = args.a or []
    b = args.b or []
    if not a and not b:
        a = [f"@{knobs.text('REPRO_DEV_BASE')}"]
    arms = {"a": ab_arms.resolve("a", a), "b": ab_arms.resolve("b", b)}
    for name, arm in arms.items():
        _settings({name: arm})  # every knob of each arm checked before any server starts
        code = ", ".join(f"{k} {v[:12] if v != 'working tree' else v}" for k, v in arm.code.items())
        print(f"ab: arm {name.upper()}: {arm.label} ({code}); vLLM port {arm.env['REPRO_VLLM_PORT']}")
    ab_arms.write(args.run_dir, arms)
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    """An arm's knobs as NUL-separated KEY=value words, for bash's ``local -x``."""
    arm = ab_arms.load(args.run_dir)[args.arm]
    sys.stdout.write("".join(f"{k}={v}\0" for k, v in arm.env.items()))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Sample both running arms in interleaved blocks; write ab.json and print the verdicts."""
    from reproduce_vllm_lmcache.report import results

    plan = Plan()
    arms = ab_arms.load(args.run_dir)
    measure = _measure(plan, arms, args.run_dir)
    path = args.run_dir / RESULT_FILE
    data: dict[str, Any] = {
        "measure": plan.measure,
        "arms": {k: {"label": v.label, "code": v.code, "knobs": v.knobs} for k, v in arms.items()},
        "plan": {k: v for k, v in vars(plan).items()},
        "config": {"knobs": knobs.resolved(), **results.environment()},
    }
    if plan.measure == "workload":
        data["workload_point"] = knobs.text("REPRO_AB_WORKLOAD_POINT")
    else:
        data["prompt_tokens"] = knobs.integer("REPRO_AB_PROMPT_TOKENS")

    def save(blocks: list[dict[str, Any]]) -> None:
        data["blocks"] = blocks
        path.write_text(results.relative(json.dumps(data, indent=1)) + "\n")

    sessions: list[dict[str, Any]] = []
    try:
        for arm in ab_arms.ARMS:
            measure.prepare(arm)
        for n in range(plan.sessions):
            if plan.sessions > 1:
                print(f"ab: session {n + 1} of {plan.sessions}", flush=True)
            seed = plan.seed + n
            blocks, stopped, seconds = sample(plan, measure, save, seed, plan.warmup_blocks if n == 0 else 0)
            found = [e.as_dict() for e in effects(plan.noise, blocks, measure.metrics, seed)]
            sessions.append(
                {"session": n + 1, "seed": seed, "blocks": blocks, "stopped": stopped, "sampling_s": round(seconds, 1), "effects": found}
            )
            if plan.sessions > 1:
                print("ab: session " + f"{n + 1}: " + "; ".join(f"{METRICS[e['metric']][0]} {e['text']}" for e in found), flush=True)
                data["sessions"] = sessions
    finally:
        measure.close()
    data.update({k: v for k, v in sessions[0].items() if k not in ("session", "seed")})
    save(data["blocks"])
    text = ab_report.render(data)
    (args.run_dir / "ab.txt").write_text(text + "\n")
    print()
    print(text)
    print(f"\nrecorded {path}")
    return 0


def register(sub: Any) -> None:
    ab = sub.add_parser("ab", help="the interleaved A/B's steps (scripts/ab.sh runs them)").add_subparsers(dest="step", required=True)
    p = ab.add_parser("arms", help="resolve both arms (--a WORD... --b WORD...) into RUN_DIR/arms.json")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--a", nargs="*", help="arm A: KNOB=value, CHECKOUT@REF or @REF words (default: @REPRO_DEV_BASE)")
    p.add_argument("--b", nargs="*", help="arm B: the same (default: the working trees)")
    p.set_defaults(func=cmd_arms)
    p = ab.add_parser("env", help="an arm's knobs, NUL-separated KEY=value")
    p.add_argument("arm", choices=ab_arms.ARMS)
    p.add_argument("--run-dir", type=Path, required=True)
    p.set_defaults(func=cmd_env)
    p = ab.add_parser("run", help="sample both running arms in interleaved blocks and give the verdicts")
    p.add_argument("--run-dir", type=Path, required=True)
    p.set_defaults(func=cmd_run)
    ab_calibrate.register(ab)
