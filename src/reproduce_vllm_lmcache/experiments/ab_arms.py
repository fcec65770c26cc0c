"""The two arms of an A/B (scripts/ab.sh): what code and knobs each runs, as the environment its
servers and its client get.

An arm is given as words (``--a WORD... --b WORD...``):
- ``KNOB=value``: a knob of that arm (``REPRO_PATCHES=upstream``: the patch set off);
- ``CHECKOUT@REF``: that checkout (``LMCache`` or ``vllm``) at a git ref (``HEAD``, a tag,
  ``HEAD~1``, ``stash@{0}``); ``@REF``: both checkouts at that ref;
- ``tree``, or nothing: the working trees as they are (your edits included).
A checkout at a ref whose files differ from the working tree runs from a worktree at that commit
(``REPRO_AB_TREES_DIR``), imported first through ``REPRO_CODE_TREES``. Both arms run side by side
on one machine: arm B's servers on each port + ``REPRO_AB_PORT_OFFSET``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from reproduce_vllm_lmcache import config, knobs
from reproduce_vllm_lmcache.knobs import KnobError
from reproduce_vllm_lmcache.workspace import pins, trees

ARMS = ("a", "b")
PORT_KNOBS = ("REPRO_LMCACHE_PORT", "REPRO_LMCACHE_HTTP_PORT", "REPRO_VLLM_PORT")
# Knobs an arm may not set: the A/B owns them.
OWNED = {*PORT_KNOBS, "REPRO_CODE_TREES", "REPRO_LOG_DIR"}
ARMS_FILE = "arms.json"


@dataclass
class Arm:
    name: str
    words: list[str]
    knobs: dict[str, str] = field(default_factory=dict)
    # checkout -> "working tree" or the commit it runs
    code: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return " ".join(self.words) or "working tree"


def parse(name: str, words: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """An arm's words -> (knobs, {checkout: ref}), refused with the reason when malformed."""
    checkouts = {src.checkout.lower(): src.checkout for src in pins.sources()}
    found_knobs: dict[str, str] = {}
    refs: dict[str, str] = {}
    for word in words:
        if word == "tree":
            continue
        if "=" in word and not word.startswith("@"):
            key, _, value = word.partition("=")
            if key not in config.defaults():
                raise KnobError(f"arm {name.upper()}: {key} is not a knob (defaults.env lists them)")
            if key in OWNED:
                raise KnobError(f"arm {name.upper()}: {key} is set by the A/B itself (arm B runs on ports + REPRO_AB_PORT_OFFSET)")
            found_knobs[key] = value
        elif "@" in word:
            where, _, ref = word.partition("@")
            if not ref:
                raise KnobError(f"arm {name.upper()}: {word!r} names no ref (e.g. LMCache@HEAD, @HEAD)")
            targets = list(checkouts.values()) if not where else [checkouts.get(where.lower(), "")]
            if not targets[0]:
                raise KnobError(f"arm {name.upper()}: {where!r} is not a checkout ({', '.join(checkouts.values())})")
            refs.update({t: ref for t in targets})
        else:
            raise KnobError(
                f"arm {name.upper()}: {word!r} is neither KNOB=value nor CHECKOUT@REF (e.g. REPRO_PATCHES=upstream, LMCache@HEAD)"
            )
    return found_knobs, refs


def _trees_dir(env: dict[str, str]) -> Path:
    return knobs.path("REPRO_AB_TREES_DIR", env)


def resolve(name: str, words: list[str], env: dict[str, str] | None = None) -> Arm:
    """The arm with its code trees made (worktrees only where a ref differs from the working tree)."""
    env = dict(os.environ) if env is None else env
    arm_knobs, refs = parse(name, words)
    arm = Arm(name, list(words), arm_knobs)
    code_trees = []
    for src in pins.sources():
        ref = refs.get(src.checkout)
        if ref is None:
            arm.code[src.checkout] = "working tree"
            continue
        commit = trees.commit_of(src.path, ref)
        arm.code[src.checkout] = commit
        if not trees.same_as_working_tree(src.path, commit):
            tree = trees.worktree(src.path, _trees_dir(env) / f"{src.checkout}-{commit[:12]}", commit)
            # Recorded relative to the repository (REPRO_CODE_TREES takes it so): no machine path in results.
            shown = tree.relative_to(config.ROOT) if tree.is_relative_to(config.ROOT) else tree
            print(f"ab: arm {name.upper()}: {src.checkout} at {ref} ({commit[:12]}) from {shown}", flush=True)
            code_trees.append(str(shown))
    offset = knobs.integer("REPRO_AB_PORT_OFFSET", env) if name == "b" else 0
    arm.env = {
        # Both arms start their servers the same way, unless one says otherwise.
        "REPRO_PRELOAD": knobs.choice("REPRO_AB_PRELOAD", ("auto", "off"), env),
        **measure_env(env),
        **arm_knobs,
        "REPRO_CODE_TREES": os.pathsep.join(code_trees),
        **{key: str(knobs.port(key, env) + offset) for key in PORT_KNOBS},
    }
    return arm


def measure_env(env: dict[str, str]) -> dict[str, str]:
    """The server knobs the measure needs in both arms (the workload point's vLLM settings)."""
    from reproduce_vllm_lmcache.experiments.ab_measures import MEASURES

    if knobs.choice("REPRO_AB_MEASURE", tuple(MEASURES), env) == "pairs":
        return {"REPRO_PROMPT_TOKENS": str(knobs.integer("REPRO_AB_PROMPT_TOKENS", env))}
    from reproduce_vllm_lmcache.experiments import workload

    configuration, concurrency, _ = workload_point(env)
    return workload.Knobs.from_env(env).server_env(configuration, concurrency, env)


def workload_point(env: dict[str, str] | None = None) -> tuple[str, int, float]:
    """REPRO_AB_WORKLOAD_POINT as (configuration, concurrency, ratio)."""
    from reproduce_vllm_lmcache.experiments.workload import CONFIGURATIONS

    raw = knobs.text("REPRO_AB_WORKLOAD_POINT", env)
    parts = raw.split(":")
    try:
        name, concurrency, ratio = parts[0], int(parts[1]), float(parts[2])
    except (IndexError, ValueError):
        raise KnobError(f"REPRO_AB_WORKLOAD_POINT={raw!r}: expected CONFIGURATION:CONCURRENCY:RATIO, e.g. lmcache:4:2") from None
    if name not in CONFIGURATIONS or concurrency < 1 or ratio <= 0:
        raise KnobError(f"REPRO_AB_WORKLOAD_POINT={raw!r}: configuration one of {', '.join(CONFIGURATIONS)}, concurrency >= 1, ratio > 0")
    return name, concurrency, ratio


def write(run_dir: Path, arms: dict[str, Arm]) -> Path:
    path = run_dir / ARMS_FILE
    path.write_text(json.dumps({k: asdict(v) for k, v in arms.items()}, indent=1) + "\n")
    return path


def load(run_dir: Path) -> dict[str, Arm]:
    data = json.loads((run_dir / ARMS_FILE).read_text())
    return {k: Arm(**v) for k, v in data.items()}


def environ(arm: Arm) -> dict[str, str]:
    """The full environment of an arm: this process's, with the arm's knobs on top."""
    return {**os.environ, **arm.env}
