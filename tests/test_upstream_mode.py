"""REPRO_PATCHES: every workspace patch applies, in order, to the pristine pinned release, and
upstream mode runs the pristine release plus only the patches needed to run (on real checkouts)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from reproduce_vllm_lmcache.workspace import patches, pins, upstream
from reproduce_vllm_lmcache.workspace.checkouts import git


@pytest.mark.parametrize("key", ["vllm", "lmcache"])
def test_patches_apply_in_order_to_the_pinned_release(key, tmp_path) -> None:
    src = pins.source(key)
    tree = tmp_path / src.checkout
    git(src.path, "worktree", "add", "--detach", str(tree), src.git_tag)
    try:
        for patch in patches.for_checkout(src.checkout):
            assert patches.state(tree, patch) is patches.State.APPLICABLE, patch.name
            assert patches.apply(tree, patch) is patches.State.APPLICABLE
            assert patches.state(tree, patch) is patches.State.APPLIED
            # ...and the checkout the servers run has it committed.
            assert patches.state(src.path, patch) is patches.State.APPLIED, patch.name
    finally:
        git(src.path, "worktree", "remove", "--force", str(tree))


@pytest.mark.parametrize(("key", "extension"), [("lmcache", "lmcache/lmcache_native*.so"), ("vllm", "vllm/_C*.so")])
def test_upstream_tree_is_the_release_plus_the_kept_patches(key, extension) -> None:
    src = pins.source(key)
    assert upstream.dropped(src), f"no {src.checkout} patch is under measurement"
    assert upstream.pythonpath("all") == ""
    trees = upstream.pythonpath("upstream").split(os.pathsep)
    tree = upstream.UPSTREAM_DIR / src.checkout
    assert str(tree) in trees
    kept = [p.subject for p in patches.for_checkout(src.checkout) if p.needed_to_run]
    assert git(tree, "log", "--format=%s", f"{src.git_tag}..HEAD").stdout.splitlines()[::-1] == kept
    for patch in upstream.dropped(src):  # its change is not in the tree, as in the release
        assert patches.state(tree, patch) is patches.State.APPLICABLE
    assert list(tree.glob(extension)), "compiled extension not copied"
    # An edit in the tree is undone on the next use: upstream mode always runs the release.
    victim = tree / src.checkout.lower() / "__init__.py" if key == "lmcache" else tree / "vllm" / "__init__.py"
    victim.write_text(victim.read_text() + "# edited\n")
    assert str(tree) in upstream.pythonpath("upstream").split(os.pathsep)
    assert "# edited" not in victim.read_text()


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(upstream.UpstreamError, match="expected one of all, upstream"):
        upstream.pythonpath("pristine")


def test_upstream_tree_imports_first(tmp_path) -> None:
    """With the tree on PYTHONPATH, Python imports LMCache from it, not from the checkout."""
    path = upstream.pythonpath("upstream")
    code = "import importlib.util as u; print(u.find_spec('lmcache').origin, u.find_spec('vllm').origin)"
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0].startswith(str(upstream.UPSTREAM_DIR / "LMCache")) and out[1].startswith(str(upstream.UPSTREAM_DIR / "vllm"))
