"""Checkout safety: local edits are never overwritten; offline failures are explained."""

import dataclasses
from pathlib import Path

import pytest

from reproduce_vllm_lmcache.workspace import checkouts
from reproduce_vllm_lmcache.workspace import pins


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
