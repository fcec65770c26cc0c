"""Run an experiment against the running servers and record its result into a run folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from reproduce_vllm_lmcache import knobs


def record(run_dir: Path | None, name: str, result: dict[str, Any], settings_dict: dict[str, Any]) -> int:
    from reproduce_vllm_lmcache.report import results

    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        data = {"config": {"knobs": knobs.resolved(), **settings_dict, **results.environment()}, **result}
        print(f"recorded {results.write(run_dir, name, data, latest=False)}")
    return 0 if result["passed"] else 1


def with_session(run: Callable[[Any], dict[str, Any]], run_dir: Path | None, name: str) -> int:
    from reproduce_vllm_lmcache.experiments.client import Session
    from reproduce_vllm_lmcache.servers.settings import Settings

    settings = Settings.from_env()
    session = Session(settings)
    try:
        result = run(session)
    finally:
        session.close()
    return record(run_dir, name, result, settings.as_dict())
