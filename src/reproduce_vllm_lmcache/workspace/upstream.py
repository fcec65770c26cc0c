"""REPRO_PATCHES=upstream: run the pristine upstream code, plus only the patches the stack needs
to run at all, next to the workspace's own checkouts (which keep every patch and your edits).

For each checkout with a patch marked ``Upstream mode: drop``, a git worktree of it sits in
``.repro/upstream/<checkout>`` at the pinned tag with the kept patches committed on top, and the
compiled extensions copied from the checkout (the patches touch Python only). The servers find it
first on their PYTHONPATH. Upstream mode has a preload server of its own (scripts/preload.sh
with REPRO_PATCHES=upstream), which imports this vLLM tree; the checkout's preload server refuses
it. Standard library only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from reproduce_vllm_lmcache.config import ROOT
from reproduce_vllm_lmcache.workspace import patches, pins
from reproduce_vllm_lmcache.workspace.checkouts import git, local_edits
from reproduce_vllm_lmcache.workspace.pins import Source

UPSTREAM_DIR = ROOT / ".repro" / "upstream"
MODES = ("all", "upstream")


class UpstreamError(RuntimeError):
    """The upstream-mode tree cannot be made."""


def dropped(src: Source) -> list[patches.Patch]:
    return [p for p in patches.for_checkout(src.checkout) if not p.needed_to_run]


def _current(tree: Path, src: Source, kept: list[patches.Patch]) -> bool:
    """The tree is the tag plus exactly the kept patches, nothing edited."""
    if not (tree / ".git").exists():
        return False
    subjects = git(tree, "log", "--format=%s", f"{src.git_tag}..HEAD", check=False).stdout.splitlines()
    on_tag = git(tree, "merge-base", "--is-ancestor", src.git_tag, "HEAD", check=False).returncode == 0
    return on_tag and subjects[::-1] == [p.subject for p in kept] and not local_edits(tree)


def _build_outputs(checkout: Path) -> list[str]:
    """Compiled extensions and generated version files of the editable build (ignored by git)."""
    out = git(checkout, "ls-files", "--others", "--ignored", "--exclude-standard").stdout.splitlines()
    return [f for f in out if f.endswith(".so") or Path(f).name == "_version.py"]


def ensure(src: Source) -> Path:
    """The upstream-mode tree of one checkout, made or refreshed; returns its path."""
    tree = UPSTREAM_DIR / src.checkout
    kept = [p for p in patches.for_checkout(src.checkout) if p.needed_to_run]
    if not _current(tree, src, kept):
        git(src.path, "worktree", "prune")
        if tree.exists():
            git(src.path, "worktree", "remove", "--force", str(tree), check=False)
            shutil.rmtree(tree, ignore_errors=True)
        tree.parent.mkdir(parents=True, exist_ok=True)
        made = git(src.path, "worktree", "add", "--detach", str(tree), src.git_tag, check=False)
        if made.returncode != 0:
            raise UpstreamError(f"cannot make {tree.relative_to(ROOT)}: {made.stderr.strip()}")
        for patch in kept:
            patches.apply(tree, patch)
    for name in _build_outputs(src.path):
        target = tree / name
        if not target.exists() or target.stat().st_mtime < (src.path / name).stat().st_mtime:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src.path / name, target)
    return tree


def pythonpath(mode: str) -> str:
    """PYTHONPATH for the servers in REPRO_PATCHES mode ``mode`` ("" for all patches)."""
    if mode not in MODES:
        raise UpstreamError(f"REPRO_PATCHES={mode!r}: expected one of {', '.join(MODES)}")
    if mode == "all":
        return ""
    return ":".join(str(ensure(src)) for src in pins.sources() if dropped(src))
