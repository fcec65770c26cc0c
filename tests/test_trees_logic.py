"""Other states of a checkout (workspace/trees.py), on a throwaway git repository: a ref resolved
or refused with a hint, a working tree equal to a commit or not, a worktree at a commit with the
checkout's build outputs copied in, reused while unchanged and remade when edited."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reproduce_vllm_lmcache.workspace import trees


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "LMCache"
    r.mkdir()
    git(r, "init", "-q")
    (r / ".gitignore").write_text("*.so\n")
    (r / "pkg").mkdir()
    (r / "pkg" / "mod.py").write_text("X = 1\n")
    git(r, "add", "-A")
    git(r, "commit", "-qm", "one")
    (r / "pkg" / "mod.py").write_text("X = 2\n")
    git(r, "commit", "-qam", "two")
    (r / "pkg" / "ext.so").write_bytes(b"\x7fELF built")  # a build output, ignored by git
    return r


def test_refs_resolve_or_are_refused_with_a_hint(repo: Path) -> None:
    assert trees.commit_of(repo, "HEAD") != trees.commit_of(repo, "HEAD~1")
    with pytest.raises(trees.TreeError, match="no commit named 'nope'"):
        trees.commit_of(repo, "nope")


def test_working_tree_equal_to_a_commit(repo: Path) -> None:
    head = trees.commit_of(repo, "HEAD")
    assert trees.same_as_working_tree(repo, head)
    assert not trees.same_as_working_tree(repo, trees.commit_of(repo, "HEAD~1"))
    (repo / "pkg" / "mod.py").write_text("X = 3\n")
    assert not trees.same_as_working_tree(repo, head)
    (repo / "pkg" / "mod.py").write_text("X = 2\n")
    (repo / "pkg" / "new.py").write_text("")  # an untracked source file is a difference too
    assert not trees.same_as_working_tree(repo, head)


def test_worktree_at_a_commit_with_build_outputs(repo: Path, tmp_path: Path) -> None:
    old = trees.commit_of(repo, "HEAD~1")
    tree = trees.worktree(repo, tmp_path / "ab" / "LMCache-old", old)
    assert (tree / "pkg" / "mod.py").read_text() == "X = 1\n"
    assert (tree / "pkg" / "ext.so").read_bytes() == b"\x7fELF built"
    assert trees.head_of(tree) == old
    (tree / "pkg" / "mod.py").write_text("X = 9\n")  # an edited tree is remade, not reused
    assert (trees.worktree(repo, tree, old) / "pkg" / "mod.py").read_text() == "X = 1\n"
    trees.remove(repo, tree)
    assert not tree.exists()
