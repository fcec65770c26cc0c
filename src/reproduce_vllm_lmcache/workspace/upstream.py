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

from pathlib import Path

from reproduce_vllm_lmcache.config import ROOT
from reproduce_vllm_lmcache.workspace import patches, pins, trees
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


def ensure(src: Source) -> Path:
    """The upstream-mode tree of one checkout, made or refreshed; returns its path."""
    tree = UPSTREAM_DIR / src.checkout
    kept = [p for p in patches.for_checkout(src.checkout) if p.needed_to_run]
    remade = not _current(tree, src, kept)
    if remade:
        trees.remove(src.path, tree)
        try:
            trees.worktree(src.path, tree, trees.commit_of(src.path, src.git_tag))
        except trees.TreeError as exc:
            raise UpstreamError(str(exc)) from exc
        for patch in kept:
            patches.apply(tree, patch)
    trees.compile_bytecode(tree / src.key, force=remade)  # remade: the patched files again
    trees.copy_build_outputs(src.path, tree)
    return tree


def pythonpath(mode: str) -> str:
    """PYTHONPATH for the servers in REPRO_PATCHES mode ``mode`` ("" for all patches)."""
    if mode not in MODES:
        raise UpstreamError(f"REPRO_PATCHES={mode!r}: expected one of {', '.join(MODES)}")
    if mode == "all":
        return ""
    return ":".join(str(ensure(src)) for src in pins.sources() if dropped(src))
