"""Checkout safety: local edits are never overwritten; offline failures are explained."""

import dataclasses
import io
import os
import tarfile
from pathlib import Path

import pytest

from reproduce_vllm_lmcache.workspace import checkouts, pins


def fake_source(tmp_path: Path, **changes: str) -> pins.Source:
    return dataclasses.replace(pins.source("vllm"), checkout=str(tmp_path / "vllm"), **changes)


def test_pinned_sources_are_the_documented_versions() -> None:
    assert {s.key: s.version for s in pins.sources()} == {"vllm": "0.32.0", "lmcache": "0.5.6"}
    for src in pins.sources():
        assert src.git_tag == f"v{src.version}"
        assert src.sdist.endswith(f"-{src.version}.tar.gz")


def test_checkouts_are_at_their_pinned_tags() -> None:
    for src in pins.sources():
        assert checkouts.at_pinned_version(src), f"{src.checkout}/ is not at {src.git_tag}"


def test_wrong_version_with_local_edits_is_refused_untouched(tmp_path) -> None:
    src = fake_source(tmp_path, git_tag="v9.9.9")
    src.path.mkdir()
    (src.path / "file.py").write_text("x = 1\n")
    checkouts.git(src.path, "init", "--quiet")
    checkouts.git(src.path, "add", "file.py")
    checkouts.git(src.path, "commit", "--quiet", "-m", "old")
    (src.path / "file.py").write_text("x = 2  # my edit\n")
    with pytest.raises(checkouts.CheckoutError, match="local edits .*file.py.*nothing was changed"):
        checkouts.ensure(src)
    assert (src.path / "file.py").read_text() == "x = 2  # my edit\n"


def test_directory_that_is_not_a_setup_checkout_is_refused(tmp_path) -> None:
    src = fake_source(tmp_path)
    src.path.mkdir()
    with pytest.raises(checkouts.CheckoutError, match="not a git checkout"):
        checkouts.ensure(src)


def test_no_network_names_both_sources_and_leaves_nothing_behind(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("REPRO_PYPI_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("REPRO_NET_TIMEOUT", "2")
    monkeypatch.setenv("REPRO_SOURCE", "sdist")
    src = fake_source(tmp_path)
    with pytest.raises(checkouts.CheckoutError, match=r"Connect to GitHub or PyPI, or put vllm-0.32.0.tar.gz into"):
        checkouts.ensure(src)
    assert not src.path.exists()
    assert not src.path.with_name("vllm.partial").exists()


def test_bad_source_mode_is_rejected(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("REPRO_SOURCE", "svn")
    with pytest.raises(checkouts.CheckoutError, match="expected auto, git or sdist"):
        checkouts.ensure(fake_source(tmp_path))


def _tar(path: Path, *members: tuple[str, int, int]) -> Path:
    """A .tar.gz holding one small file per (name, uid, mode)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, uid, mode in members:
            info = tarfile.TarInfo(name)
            info.size, info.uid, info.gid, info.uname, info.mode = 2, uid, uid, "someone", mode
            tar.addfile(info, io.BytesIO(b"ok"))
    return path


def test_sdist_files_belong_to_whoever_runs_setup(tmp_path) -> None:
    # On any Python (3.11.2, Debian 12's, has no tarfile data filter): the sdist author's uid
    # would make git refuse the checkout ("dubious ownership") when setup runs as root.
    archive = _tar(tmp_path / "ok.tar.gz", ("pkg-1.0/setup.py", 12345, 0o4777))
    with tarfile.open(archive) as tar:
        checkouts.extract(tar, tmp_path / "out")
    extracted = tmp_path / "out/pkg-1.0/setup.py"
    assert extracted.read_bytes() == b"ok"
    assert extracted.stat().st_uid == os.getuid() and not extracted.stat().st_mode & 0o4022


@pytest.mark.parametrize("name", ["../escape.py", "/abs/escape.py"])
def test_sdist_member_outside_the_checkout_is_refused(tmp_path, name) -> None:
    archive = _tar(tmp_path / "bad.tar.gz", ("pkg-1.0/setup.py", 0, 0o644), (name, 0, 0o644))
    with tarfile.open(archive) as tar, pytest.raises((checkouts.CheckoutError, tarfile.TarError)):
        checkouts.extract(tar, tmp_path / "out")
    assert not (tmp_path / "escape.py").exists()
