"""Recorded runs: results/runs/<UTC timestamp>-<label>/run.json, copied to results/latest.json."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from . import config, pins
from .settings import cpu_flags


def results_dir() -> Path:
    return config.path("REPRO_RESULTS_DIR")


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
        return subprocess.run(
            ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()


def checkout_state(path: Path, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """HEAD and edited files of a checkout, so results say what code produced them
    (``exclude``: sub-folders left out)."""
    spec = ["--", ".", *(f":(exclude){e}" for e in exclude)]

    def git(*args: str) -> str:
        # Only trailing newlines go: a porcelain line starts with a space (" M file").
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True).stdout.rstrip("\n")

    edits = git("status", "--porcelain", "--untracked-files=all", *spec).splitlines()
    diff = subprocess.run(["git", "-C", str(path), "diff", "HEAD", *spec], capture_output=True).stdout
    untracked = [line[3:] for line in edits if line.startswith("??")]
    digest = hashlib.sha256(diff)
    for name in sorted(untracked):
        file = path / name
        digest.update(name.encode() + (file.read_bytes() if file.is_file() else b""))
    return {
        "head": git("rev-parse", "HEAD"),
        "edited_files": [line[3:] for line in edits],
        # Changes when any edit changes, even to a file that was already edited.
        "edits_sha256": digest.hexdigest() if edits else "",
    }


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
        "checkouts": {src.checkout: checkout_state(src.path) for src in pins.sources()},
    }


def write(run_dir: Path, name: str, data: dict[str, Any], latest: bool = True) -> Path:
    """Write ``data`` as run_dir/name and (unless told not to) copy it to results/latest.json."""
    path = run_dir / name
    path.write_text(json.dumps(data, indent=2) + "\n")
    if latest:
        shutil.copyfile(path, results_dir() / "latest.json")
    return path
