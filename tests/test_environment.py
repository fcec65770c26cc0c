"""The checks that end setup, asserted one by one, plus the lock and the disk guard."""

import ssl
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from reproduce_vllm_lmcache.config import ROOT
from reproduce_vllm_lmcache.workspace import bootstrap, checks, pins

pytestmark = pytest.mark.environment


@pytest.mark.parametrize("check", [c for _, c in checks.ALL], ids=[t for t, _ in checks.ALL])
def test_environment_check(check) -> None:
    assert check()


def test_uv_lock_matches_pyproject() -> None:
    result = subprocess.run(
        [bootstrap.uv_binary(), "lock", "--check"],
        cwd=ROOT,
        env=bootstrap.uv_env(bootstrap.build_env(), bootstrap.system_store_exists()),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_uv_lock_has_no_machine_paths_and_pins_the_torch_wheel() -> None:
    """The lock is committed: every local source is relative, and torch is the pinned wheel."""
    text = (ROOT / "uv.lock").read_text()
    assert "file://" not in text and str(ROOT) not in text
    lock = tomllib.loads(text)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    sources = {s["path"] for s in project["tool"]["uv"]["sources"]["torch"]}
    for machine, wheel in pins.load()["torch"]["wheels"].items():
        assert f"wheelhouse/{wheel['file']}" in sources, f"pyproject.toml lacks the torch source for {machine}"
    locked = {w["filename"]: w["hash"] for p in lock["package"] if p["name"] == "torch" and "path" in p["source"] for w in p["wheels"]}
    assert locked == {w["file"]: f"sha256:{w['sha256']}" for w in pins.load()["torch"]["wheels"].values()}


def test_full_disk_is_refused_with_numbers(tmp_path) -> None:
    assert bootstrap.disk_problem(tmp_path, 0.001) is None
    message = bootstrap.disk_problem(tmp_path, 1e9)
    assert message and "GiB free at" in message and "needs about 1e+09 GiB" in message


@pytest.mark.parametrize("checkout,package", [("vllm", "vllm"), ("LMCache", "lmcache")])
def test_checkouts_are_live_editable(checkout, package) -> None:
    """A .py file written under the checkout is imported by the next interpreter, no reinstall."""
    probe = ROOT / checkout / package / "_repro_live_edit_probe.py"
    probe.write_text("VALUE = 'live'\n")
    # Found through the package's location on the next interpreter's sys.path, and loaded without
    # importing the whole package (import vllm alone takes ~20 s here).
    code = (
        "import importlib.machinery as m, importlib.util as u; "
        f"pkg = m.PathFinder.find_spec({package!r}); "
        "spec = m.PathFinder.find_spec('_repro_live_edit_probe', list(pkg.submodule_search_locations)); "
        "mod = u.module_from_spec(spec); spec.loader.exec_module(mod); print(mod.VALUE, spec.origin)"
    )
    try:
        result = subprocess.run([str(ROOT / ".venv/bin/python"), "-c", code], cwd=ROOT, capture_output=True, text=True)
    finally:
        probe.unlink()
    value, origin = result.stdout.split()
    assert value == "live" and origin == str(probe), result.stdout + result.stderr[-2000:]


def test_uv_trusts_the_system_store_unless_the_user_chose(tmp_path) -> None:
    assert bootstrap.uv_env({"PATH": "/bin"}, has_store=True) == {"PATH": "/bin", "UV_SYSTEM_CERTS": "1"}
    assert bootstrap.uv_env({"UV_SYSTEM_CERTS": "0"}, has_store=True) == {"UV_SYSTEM_CERTS": "0"}
    assert bootstrap.uv_env({"UV_NATIVE_TLS": "1"}, has_store=True) == {"UV_NATIVE_TLS": "1"}
    assert bootstrap.uv_env({"PATH": "/bin"}, has_store=False) == {"PATH": "/bin"}


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS always has its keychain")
def test_system_store_is_openssls_ca_file_or_a_non_empty_folder(tmp_path) -> None:
    def paths(cafile: Path | None, capath: Path | None) -> ssl.DefaultVerifyPaths:
        return ssl.DefaultVerifyPaths(str(cafile) if cafile else None, str(capath) if capath else None, "", "", "", "")

    bundle, folder = tmp_path / "ca.crt", tmp_path / "certs"
    folder.mkdir()
    assert not bootstrap.system_store_exists(paths(bundle, folder))
    (folder / "abc.0").write_text("x")
    assert bootstrap.system_store_exists(paths(None, folder))
    bundle.write_text("x")
    assert bootstrap.system_store_exists(paths(bundle, None))
