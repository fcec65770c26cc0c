"""Lint, as CI and the quick tier run it: ruff (lint and format, configured in pyproject.toml) on
the Python, shellcheck (.shellcheckrc) on the scripts. Both come from the dev group of uv.lock."""

from __future__ import annotations

import subprocess

import pytest

from reproduce_vllm_lmcache.config import ROOT

BIN = ROOT / ".venv" / "bin"
SCRIPTS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "scripts").glob("*.sh")) + [".ci/run"]


@pytest.mark.parametrize(
    "argv",
    [["ruff", "check", "src", "tests"], ["ruff", "format", "--check", "src", "tests"], ["shellcheck", *SCRIPTS]],
    ids=["ruff-check", "ruff-format", "shellcheck"],
)
def test_lint(argv: list[str]) -> None:
    result = subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout[-4000:]}{result.stderr[-2000:]}"
