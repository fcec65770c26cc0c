"""Typed knobs: the one place where a knob's text (``config``: defaults.env overridden by the
environment) becomes a value, checked, with an error that names the knob, its value and the fix.

The readers (``integer``, ``number``, ``choice``, ...) are what every layer uses instead of raw
strings; the small dataclasses group the knobs of one concern (requests, setup, each experiment).
The servers' knobs are ``servers.settings.Settings`` and the workload's ``experiments.workload.Knobs``,
both built from these readers. ``repro preflight NAME`` parses a script's knobs before anything
starts. Standard library only: setup uses it before the project environment exists.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reproduce_vllm_lmcache import config

Env = dict[str, str] | None


class KnobError(ValueError):
    """A knob has a value the workspace cannot use; the message names knob and fix."""


def text(key: str, env: Env = None) -> str:
    return config.get(key, env)


def path(key: str, env: Env = None) -> Path:
    return config.path(key, env)


def integer(key: str, env: Env = None, minimum: int | None = 1, maximum: int | None = None) -> int:
    raw = config.get(key, env)
    try:
        value = int(raw)
    except ValueError:
        raise KnobError(f"{key}={raw!r}: expected a whole number") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise KnobError(f"{key}={value}: must be {bound}")
    return value


def number(key: str, env: Env = None, positive: bool = True) -> float:
    raw = config.get(key, env)
    try:
        value = float(raw)
    except ValueError:
        raise KnobError(f"{key}={raw!r}: expected a number") from None
    if positive and not value > 0:
        raise KnobError(f"{key}={value}: must be > 0")
    if not positive and value < 0:
        raise KnobError(f"{key}={value}: must be >= 0")
    return value


def choice(key: str, choices: tuple[str, ...], env: Env = None) -> str:
    value = config.get(key, env)
    if value not in choices:
        raise KnobError(f"{key}={value!r}: expected one of {', '.join(choices)}")
    return value


def flag(key: str, env: Env = None) -> bool:
    return choice(key, ("0", "1"), env) == "1"


def port(key: str, env: Env = None) -> int:
    return integer(key, env, 1, 65535)


def numbers(key: str, env: Env = None, kind: type = float, allow_empty: bool = False) -> list[Any]:
    """A comma- or space-separated list of positive numbers (e.g. 0.5,1,2,4)."""
    raw = config.get(key, env)
    try:
        values = [kind(x) for x in raw.replace(" ", ",").split(",") if x]
    except ValueError:
        values = [0]
    if (not values and not allow_empty) or any(v <= 0 for v in values):
        raise KnobError(f"{key}={raw!r}: expected positive numbers, e.g. {config.defaults().get(key, '1,2')}")
    return values


def names(key: str, env: Env = None, known: tuple[str, ...] = ()) -> tuple[str, ...]:
    """A comma-separated list of names, each one of ``known`` (when given), at least one."""
    found = tuple(x for x in config.get(key, env).replace(" ", ",").split(",") if x)
    unknown = [n for n in found if known and n not in known]
    if unknown or not found:
        raise KnobError(f"{key}: unknown {unknown or 'empty list'}; choose from {', '.join(known)}")
    return found


def words(key: str, env: Env = None) -> tuple[str, ...]:
    """Shell-quoted words (e.g. ``--foo 1 --bar 'a b'``)."""
    raw = config.get(key, env)
    try:
        return tuple(shlex.split(raw))
    except ValueError as exc:
        raise KnobError(f"{key}={raw!r}: not shell words ({exc})") from None


def resolved() -> dict[str, str]:
    """Every knob's text in force now (recorded with each result)."""
    return config.resolved()


# --- one object per concern ------------------------------------------------------------------


@dataclass(frozen=True)
class Requests:
    """How the client talks to the servers and judges answers."""

    timeout_s: float
    tie_tolerance: float
    warmup_tokens: int
    warmup: bool
    preload: bool

    @classmethod
    def from_env(cls, env: Env = None) -> Requests:
        return cls(
            timeout_s=number("REPRO_REQUEST_TIMEOUT", env),
            tie_tolerance=number("REPRO_TIE_TOLERANCE", env, positive=False),
            warmup_tokens=integer("REPRO_WARMUP_TOKENS", env, minimum=0),
            warmup=flag("REPRO_VLLM_WARMUP", env),
            preload=choice("REPRO_PRELOAD", ("auto", "off"), env) == "auto",
        )


@dataclass(frozen=True)
class Places:
    """Where things go: results, logs, the download cache."""

    results_dir: Path
    log_dir: Path
    cache_dir: Path

    @classmethod
    def from_env(cls, env: Env = None) -> Places:
        return cls(path("REPRO_RESULTS_DIR", env), path("REPRO_LOG_DIR", env), path("REPRO_CACHE_DIR", env))


@dataclass(frozen=True)
class Bench:
    prompt_tokens: tuple[int, ...]
    repeats: int

    @classmethod
    def from_env(cls, env: Env = None) -> Bench:
        return cls(tuple(numbers("REPRO_BENCH_PROMPT_TOKENS", env, int)), integer("REPRO_BENCH_REPEATS", env))


@dataclass(frozen=True)
class Eviction:
    prompt_tokens: int
    prompts: int

    @classmethod
    def from_env(cls, env: Env = None) -> Eviction:
        prompts = integer("REPRO_EVICTION_PROMPTS", env)
        if prompts < 5:
            raise KnobError(f"REPRO_EVICTION_PROMPTS={prompts}: the stream needs at least 5 prompts (P1..P4, P1 again, P5)")
        return cls(integer("REPRO_EVICTION_PROMPT_TOKENS", env), prompts)


@dataclass(frozen=True)
class Prompts:
    """One prompt length of an experiment (REPRO_<NAME>_PROMPT_TOKENS)."""

    tokens: int

    @classmethod
    def of(cls, name: str, env: Env = None) -> Prompts:
        return cls(integer(f"REPRO_{name.upper()}_PROMPT_TOKENS", env))


@dataclass(frozen=True)
class Fuzz:
    """repro fuzz / scripts/fuzz.sh: schemathesis's bounds and the servers it targets."""

    examples: int
    max_time_s: int
    seed: int
    targets: tuple[str, ...]

    @classmethod
    def from_env(cls, env: Env = None) -> Fuzz:
        return cls(
            integer("REPRO_FUZZ_EXAMPLES", env),
            integer("REPRO_FUZZ_MAX_TIME_S", env),
            integer("REPRO_FUZZ_SEED", env, minimum=0),
            names("REPRO_FUZZ_TARGETS", env, known=("vllm", "lmcache")),
        )


@dataclass(frozen=True)
class SecondVllm:
    port: int

    @classmethod
    def from_env(cls, env: Env = None) -> SecondVllm:
        return cls(port("REPRO_SECOND_VLLM_PORT", env))


@dataclass(frozen=True)
class Prometheus:
    binary: str
    port: int
    scrape_s: float

    @classmethod
    def from_env(cls, env: Env = None) -> Prometheus:
        return cls(text("REPRO_PROMETHEUS_BIN", env), port("REPRO_PROMETHEUS_PORT", env), number("REPRO_PROMETHEUS_SCRAPE_S", env))


def as_dict(obj: Any) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(obj).items()}


def environ(env: Env = None) -> dict[str, str]:
    return dict(os.environ) if env is None else env


@dataclass(frozen=True)
class Soak:
    """REPRO_SOAK_*: the load, the samples and the verdicts' bounds, checked against each other."""

    minutes: float
    l1_size_gb: float
    max_num_seqs: int
    output_tokens: int
    sample_s: float
    sample_tokens: int
    sample_prompts: int
    warmup_s: float
    recovery_s: float
    rss_growth_mb: float
    shm_growth_mb: float
    hit_recovery: float
    eviction_share: float
    tie_tolerance: float
    chat: dict[str, float]

    @classmethod
    def from_env(cls, env: Env = None) -> Soak:
        found = cls(
            minutes=number("REPRO_SOAK_MINUTES", env),
            l1_size_gb=number("REPRO_SOAK_L1_SIZE_GB", env),
            max_num_seqs=integer("REPRO_SOAK_MAX_NUM_SEQS", env),
            output_tokens=integer("REPRO_SOAK_OUTPUT_TOKENS", env),
            sample_s=number("REPRO_SOAK_SAMPLE_S", env),
            sample_tokens=integer("REPRO_SOAK_SAMPLE_TOKENS", env),
            sample_prompts=integer("REPRO_SOAK_SAMPLE_PROMPTS", env),
            warmup_s=number("REPRO_SOAK_WARMUP_S", env, positive=False),
            recovery_s=number("REPRO_SOAK_RECOVERY_S", env, positive=False),
            rss_growth_mb=number("REPRO_SOAK_RSS_GROWTH_MB", env),
            shm_growth_mb=number("REPRO_SOAK_SHM_GROWTH_MB", env),
            hit_recovery=number("REPRO_SOAK_HIT_RECOVERY", env),
            eviction_share=number("REPRO_SOAK_EVICTION_SHARE", env),
            tie_tolerance=number("REPRO_TIE_TOLERANCE", env, positive=False),
            chat={
                k: number(f"REPRO_SOAK_CHAT_{k}", env)
                for k in ("USERS", "QPS", "SHARED_TOKENS", "HISTORY_TOKENS", "INPUT_TOKENS", "ROUND_S")
            },
        )
        found.check(integer("REPRO_MAX_MODEL_LEN", env, 16))
        return found

    def check(self, max_model_len: int) -> None:
        if self.max_num_seqs < 2:
            raise KnobError(f"REPRO_SOAK_MAX_NUM_SEQS={self.max_num_seqs}: the soak batches requests, it needs 2 or more")
        if self.minutes * 60 < 2 * self.warmup_s:
            raise KnobError(f"REPRO_SOAK_MINUTES={self.minutes:g}: the load must last at least twice REPRO_SOAK_WARMUP_S")
        # A chat's history grows every turn (the answer and the next input); it must fit the model.
        g = self.chat
        turns = g["ROUND_S"] * g["QPS"] / g["USERS"]
        longest = g["SHARED_TOKENS"] + g["HISTORY_TOKENS"] + (turns + 1) * (g["INPUT_TOKENS"] + self.output_tokens + 10)
        if longest > max_model_len:
            raise KnobError(
                f"soak chat: a session reaches ~{longest:.0f} tokens in REPRO_SOAK_CHAT_ROUND_S; "
                f"over REPRO_MAX_MODEL_LEN={max_model_len}: shorten the round or the history"
            )

    def bounds(self) -> dict[str, float]:
        """The verdicts' bounds (report/soak.py Bounds)."""
        keys = ("warmup_s", "recovery_s", "rss_growth_mb", "shm_growth_mb", "hit_recovery", "eviction_share", "tie_tolerance")
        return {k: getattr(self, k) for k in keys}
