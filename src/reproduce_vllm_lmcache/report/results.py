"""Recorded runs: results/runs/<UTC timestamp>-<label>/run.json, copied to results/latest.json."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from reproduce_vllm_lmcache import config, knobs
from reproduce_vllm_lmcache.report import html
from reproduce_vllm_lmcache.servers.settings import cpu_flags
from reproduce_vllm_lmcache.workspace import checkouts, pins


def results_dir() -> Path:
    return knobs.path("REPRO_RESULTS_DIR")


def new_run_dir(label: str, now: float | None = None) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    path = results_dir() / "runs" / f"{stamp}-{label}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    try:
        return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    return {
        "vllm_version": package_version("vllm"),
        "lmcache_version": package_version("lmcache"),
        "torch_version": package_version("torch"),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_features": sorted(f for f in cpu_flags() if f.startswith(("avx", "amx"))),
        "machine": platform.machine(),
        "system": platform.system(),
        "checkouts": {src.checkout: checkouts.state(src.path) for src in pins.sources()},
    }


def relative(text: str) -> str:
    """Paths inside the workspace as the workspace names them (``models/...``), so that a
    recorded result says nothing about the machine it was recorded on."""
    return text.replace(f"{config.ROOT}/", "").replace(str(config.ROOT), ".")


def write(run_dir: Path, name: str, data: dict[str, Any], latest: bool = True) -> Path:
    """Write ``data`` as run_dir/name (workspace paths relative), (unless told not to) copy it
    to results/latest.json, and refresh the run's report.html and the results index."""
    path = run_dir / name
    path.write_text(relative(json.dumps(data, indent=2)) + "\n")
    if latest:
        shutil.copyfile(path, results_dir() / "latest.json")
    html.write_run_report(run_dir)
    if run_dir.parent == results_dir() / "runs":
        html.write_index(results_dir())
    return path
