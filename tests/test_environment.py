"""The checks that end setup, asserted one by one, plus the lock and the disk guard."""

import subprocess

import pytest

from reproduce_vllm_lmcache import bootstrap, checks
from reproduce_vllm_lmcache.config import ROOT


@pytest.mark.parametrize("check", [c for _, c in checks.ALL], ids=[t for t, _ in checks.ALL])
def test_environment_check(check) -> None:
    assert check()


def test_uv_lock_matches_pyproject() -> None:
    result = subprocess.run(
        ["uv", "lock", "--check"], cwd=ROOT, env=bootstrap.build_env(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_full_disk_is_refused_with_numbers(tmp_path) -> None:
    assert bootstrap.disk_problem(tmp_path, 0.001) is None
    message = bootstrap.disk_problem(tmp_path, 1e9)
    assert message and "GiB free at" in message and "needs about 1e+09 GiB" in message


@pytest.mark.parametrize("checkout,package", [("vllm", "vllm"), ("LMCache", "lmcache")])
def test_checkouts_are_live_editable(checkout, package) -> None:
    """A .py file written under the checkout is imported by the next interpreter, no reinstall."""
    probe = ROOT / checkout / package / "_repro_live_edit_probe.py"
    probe.write_text("VALUE = 'live'\n")
    try:
        result = subprocess.run(
            [str(ROOT / ".venv/bin/python"), "-c", f"from {package}._repro_live_edit_probe import VALUE; print(VALUE)"],
            cwd=ROOT, capture_output=True, text=True,
        )
    finally:
        probe.unlink()
    assert result.stdout.strip() == "live", result.stderr[-2000:]
