"""`repro patches series`: every workspace patch as a git format-patch series against the pinned
release, signed off by the person exporting, that `git am` applies to the pristine tag."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reproduce_vllm_lmcache.workspace import patches, pins, series

SIGNER = {"GIT_AUTHOR_NAME": "Ada Tester", "GIT_AUTHOR_EMAIL": "ada@example.com"}
COMMITTER = {"GIT_COMMITTER_NAME": "Ada Tester", "GIT_COMMITTER_EMAIL": "ada@example.com"}


def test_series_is_signed_off_wrapped_and_applies_to_the_pristine_tag(tmp_path: Path, monkeypatch) -> None:
    for key, value in {**SIGNER, **COMMITTER}.items():
        monkeypatch.setenv(key, value)
    written = series.export(tmp_path / "out")
    for src in pins.sources():
        files = sorted((tmp_path / "out" / src.checkout).glob("*.patch"))
        assert len(files) == sum(len(series.parts(p)) or 1 for p in patches.for_checkout(src.checkout)) > 0
        for path in files:
            text = path.read_text()
            head, _, _ = text.partition("\n---\n")
            assert "From: Ada Tester <ada@example.com>" in head and head.rstrip().endswith("Signed-off-by: Ada Tester <ada@example.com>")
            prose = [line for line in head.split("\n\n", 1)[1].splitlines() if line and not line.startswith("    ")]
            assert all(len(line) <= series.WIDTH for line in prose if not line.startswith(("Subject:", " "))), path.name
        # git am of the whole series onto the pristine tag, in a scratch worktree.
        tree = tmp_path / f"am-{src.checkout}"
        subprocess.run(["git", "-C", str(src.path), "worktree", "add", "-q", "--detach", str(tree), src.git_tag], check=True)
        try:
            am = subprocess.run(["git", "-C", str(tree), "am", "-q", *map(str, files)], capture_output=True, text=True)
            assert am.returncode == 0, am.stdout + am.stderr
        finally:
            subprocess.run(["git", "-C", str(src.path), "worktree", "remove", "--force", str(tree)], check=False)
    assert len(written) == sum(len(series.parts(p)) or 1 for s in pins.sources() for p in patches.for_checkout(s.checkout))
    # LMCache 0001 bundles three changes: three commits, each one file of its diff.
    cpu_copy = sorted((tmp_path / "out" / "LMCache").glob("000[1-3]-*.patch"))
    assert [p.read_text().count("\ndiff --git ") for p in cpu_copy] == [1, 1, 1]
    assert all(f"Part: {k} of 3 of the workspace patch 0001-cpu-kv-copy" in p.read_text() for k, p in enumerate(cpu_copy, 1))


def test_series_refuses_without_an_identity(tmp_path: Path, monkeypatch) -> None:
    for key in SIGNER:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no global git config
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    with pytest.raises(patches.PatchError, match="Signed-off-by needs your identity"):
        series.export(tmp_path / "out")
