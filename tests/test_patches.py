"""Patch detection and application on small throwaway git repositories."""

import subprocess
from pathlib import Path

import pytest

from reproduce_vllm_lmcache.workspace import checkouts, patches

PATCH = """Reason: make the greeting polite.
diff --git a/hello.txt b/hello.txt
--- a/hello.txt
+++ b/hello.txt
@@ -1 +1 @@
-hi
+hello
"""


def make_repo(path: Path, content: str) -> Path:
    path.mkdir()
    (path / "hello.txt").write_text(content)
    checkouts.git(path, "init", "--quiet")
    checkouts.git(path, "add", "hello.txt")
    checkouts.git(path, "commit", "--quiet", "-m", "upstream")
    return path


@pytest.fixture
def patch(tmp_path: Path) -> patches.Patch:
    path = tmp_path / "0001-polite.patch"
    path.write_text(PATCH)
    return patches.Patch(path)


def test_applicable_patch_is_committed_then_detected_as_applied(tmp_path, patch) -> None:
    repo = make_repo(tmp_path / "repo", "hi\n")
    assert patches.state(repo, patch) is patches.State.APPLICABLE
    assert patches.apply(repo, patch) is patches.State.APPLICABLE
    assert (repo / "hello.txt").read_text() == "hello\n"
    assert patches.state(repo, patch) is patches.State.APPLIED
    assert checkouts.local_edits(repo) == []
    # A second apply changes nothing.
    assert patches.apply(repo, patch) is patches.State.APPLIED
    log = checkouts.git(repo, "log", "--format=%s").stdout.splitlines()
    assert log == ["workspace patch 0001-polite: make the greeting polite.", "upstream"]


def test_patch_already_in_the_source_is_not_applied_again(tmp_path, patch) -> None:
    repo = make_repo(tmp_path / "repo", "hello\n")
    assert patches.apply(repo, patch) is patches.State.UPSTREAM
    assert checkouts.git(repo, "rev-list", "--count", "HEAD").stdout.strip() == "1"


def test_conflicting_patch_is_a_clear_error_and_leaves_the_tree_alone(tmp_path, patch) -> None:
    repo = make_repo(tmp_path / "repo", "bonjour\n")
    assert patches.state(repo, patch) is patches.State.CONFLICT
    with pytest.raises(patches.PatchError, match="does not apply"):
        patches.apply(repo, patch)
    assert (repo / "hello.txt").read_text() == "bonjour\n"


def test_user_edits_elsewhere_survive_patching(tmp_path, patch) -> None:
    repo = make_repo(tmp_path / "repo", "hi\n")
    (repo / "other.txt").write_text("mine\n")
    checkouts.git(repo, "add", "other.txt")
    checkouts.git(repo, "commit", "--quiet", "-m", "user")
    (repo / "other.txt").write_text("mine, edited\n")
    patches.apply(repo, patch)
    assert checkouts.local_edits(repo) == ["other.txt"]


def test_patch_without_reason_line_is_rejected(tmp_path) -> None:
    path = tmp_path / "0002-bare.patch"
    path.write_text(PATCH.split("\n", 1)[1])
    with pytest.raises(patches.PatchError, match="Reason"):
        _ = patches.Patch(path).reason


def test_every_workspace_patch_has_a_reason() -> None:
    found = list(patches.PATCH_DIR.rglob("*.patch"))
    assert found, "the vLLM slot-mapping patch is missing"
    for path in found:
        assert patches.Patch(path).reason
        assert subprocess.run(["git", "apply", "--stat", str(path)], capture_output=True).returncode == 0


def test_header_fields_and_upstream_mode(tmp_path) -> None:
    measured = tmp_path / "0002-faster.patch"
    measured.write_text("Reason: faster.\nEffect: 2x.\nUpstream mode: drop\n" + PATCH.split("\n", 1)[1])
    assert patches.Patch(measured).header("Effect") == "2x."
    assert not patches.Patch(measured).needed_to_run
    plain = tmp_path / "0001-polite.patch"
    plain.write_text(PATCH)
    assert patches.Patch(plain).needed_to_run  # no field: kept (needed to run at all)
    assert patches.Patch(plain).header("Effect") == ""
    wrong = tmp_path / "0003-wrong.patch"
    wrong.write_text("Reason: x.\nUpstream mode: maybe\n" + PATCH.split("\n", 1)[1])
    with pytest.raises(patches.PatchError, match="keep or drop"):
        _ = patches.Patch(wrong).needed_to_run


def test_every_workspace_patch_has_the_full_header() -> None:
    for checkout in ("vllm", "LMCache"):
        for patch in patches.for_checkout(checkout):
            assert patch.reason and patch.header("Effect") and patch.header("Upstream"), patch.name
            _ = patch.needed_to_run  # a valid Upstream mode (or none)


def test_every_bug_fix_has_a_reproduction_a_test_record_and_a_report() -> None:
    """A patch that fixes an upstream bug (a ``Bug:`` line) says how to reproduce it, runs
    without it in upstream mode (so the suite shows the before), and has its report."""
    from reproduce_vllm_lmcache.config import ROOT

    fixes = [p for c in ("vllm", "LMCache") for p in patches.for_checkout(c) if p.header("Bug")]
    assert fixes, "no bug-fix patch in the set"
    for patch in fixes:
        assert patch.header("Reproduce") and patch.header("What"), patch.name
        assert not patch.needed_to_run, f"{patch.name}: a bug fix must be 'Upstream mode: drop'"
        report = ROOT / "docs" / "upstream" / f"{patch.name}.md"
        assert report.is_file(), f"{report.name} missing: run repro patches export {patch.name}"
        assert patch.path.read_text().split("diff --git", 1)[1].splitlines()[0] in report.read_text()


def test_in_effect_follows_the_mode(tmp_path, monkeypatch) -> None:
    repo = make_repo(tmp_path / "Demo", "hi\n")
    (tmp_path / "patches" / "Demo").mkdir(parents=True)
    dropped = tmp_path / "patches" / "Demo" / "0001-polite.patch"
    dropped.write_text(PATCH.replace("Reason: make the greeting polite.\n", "Reason: polite.\nUpstream mode: drop\n"))
    monkeypatch.setattr(patches, "PATCH_DIR", tmp_path / "patches")
    monkeypatch.setattr(patches, "ROOT", tmp_path)
    assert not patches.in_effect("Demo", "0001-polite", "all")  # not committed yet
    patches.apply(repo, patches.for_checkout("Demo")[0])
    assert patches.in_effect("Demo", "0001-polite", "all")
    assert not patches.in_effect("Demo", "0001-polite", "upstream")  # upstream mode leaves it out
    assert not patches.in_effect("Demo", "0002-missing", "all")
