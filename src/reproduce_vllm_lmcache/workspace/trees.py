"""Other states of the code, importable beside the checkouts: a git worktree of a checkout at a
ref (a tag, ``HEAD``, ``HEAD~1``, a stash, a commit), with the checkout's build outputs (compiled
extensions, ``_version.py``) copied in so it imports as the checkout does. The servers find such
a tree first on their PYTHONPATH (``REPRO_CODE_TREES``; REPRO_PATCHES=upstream's pristine tree is
one too). An edit to compiled code is not carried over: trees share the checkout's build.
Standard library only.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from reproduce_vllm_lmcache.workspace.checkouts import git


class TreeError(RuntimeError):
    """A tree cannot be made (unknown ref, git refused)."""


def commit_of(checkout: Path, ref: str) -> str:
    """The commit ``ref`` names in ``checkout`` (refused with git's message when it names none)."""
    found = git(checkout, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    if found.returncode != 0:
        raise TreeError(
            f"{checkout.name}: no commit named {ref!r} (try HEAD, HEAD~1, a tag such as `git -C {checkout.name} tag`, or stash@{{0}})"
        )
    return found.stdout.strip()


def same_as_working_tree(checkout: Path, commit: str) -> bool:
    """The working tree holds exactly ``commit``'s files (no tracked edit, no untracked source)."""
    tracked = git(checkout, "diff", "--quiet", commit, check=False).returncode == 0
    untracked = git(checkout, "ls-files", "--others", "--exclude-standard").stdout.strip()
    return tracked and not untracked


def build_outputs(checkout: Path) -> list[str]:
    """Compiled extensions and generated version files of the editable build (ignored by git)."""
    out = git(checkout, "ls-files", "--others", "--ignored", "--exclude-standard").stdout.splitlines()
    return [f for f in out if f.endswith(".so") or Path(f).name == "_version.py"]


def copy_build_outputs(checkout: Path, tree: Path) -> None:
    """The checkout's build outputs into ``tree``, where missing or older."""
    for name in build_outputs(checkout):
        target = tree / name
        if not target.exists() or target.stat().st_mtime < (checkout / name).stat().st_mtime:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(checkout / name, target)


def head_of(tree: Path) -> str:
    return git(tree, "rev-parse", "HEAD", check=False).stdout.strip() if (tree / ".git").exists() else ""


def worktree(checkout: Path, tree: Path, commit: str) -> Path:
    """A detached worktree of ``checkout`` at ``commit`` in ``tree`` (remade unless it is already
    there and unedited), its build outputs copied in. Returns ``tree``."""
    from reproduce_vllm_lmcache.workspace.checkouts import local_edits

    if head_of(tree) != commit or local_edits(tree):
        remove(checkout, tree)
        tree.parent.mkdir(parents=True, exist_ok=True)
        made = git(checkout, "worktree", "add", "--detach", str(tree), commit, check=False)
        if made.returncode != 0:
            raise TreeError(f"cannot make {tree}: {made.stderr.strip()}")
    compile_bytecode(tree / checkout.name.lower())
    copy_build_outputs(checkout, tree)
    return tree


def compile_modules(places: list[Path], python: str = sys.executable) -> None:
    """Every module under ``places`` compiled to .pyc by ``python`` (compileall skips those
    already current). Python does this on first import by itself, except where
    PYTHONDONTWRITEBYTECODE is set (some CI machines and containers): there every process
    compiles all it imports again. A file that does not compile (test data, vendored files of
    other Python versions) is left to fail on import as before."""
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run([python, "-m", "compileall", "-q", "-j", "0", *map(str, places)], check=False, **quiet)


def compile_bytecode(package: Path, force: bool = False) -> None:
    """A tree's package compiled (once: its top __pycache__ says it was, unless ``force`` after
    an edit such as a patch), as setup does for the checkouts."""
    if package.is_dir() and (force or not (package / "__pycache__").is_dir()):
        compile_modules([package])


def remove(checkout: Path, tree: Path) -> None:
    """Remove a worktree made by :func:`worktree` (no-op when absent)."""
    git(checkout, "worktree", "prune", check=False)
    if tree.exists():
        git(checkout, "worktree", "remove", "--force", str(tree), check=False)
        shutil.rmtree(tree, ignore_errors=True)
