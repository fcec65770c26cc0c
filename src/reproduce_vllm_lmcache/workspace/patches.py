"""The workspace's own patch set: ``patches/<checkout>/*.patch``, applied as commits.

Each patch file starts with a line ``Reason: ...``, then optional ``Field: value`` header lines
(What, Effect, Upstream, Upstream mode), then a git diff. A patch counts as
applied when the checkout has its commit, or when its change is already in the source
(e.g. a newer upstream release). Standard library only.
"""

from __future__ import annotations

import enum
import subprocess
from dataclasses import dataclass
from pathlib import Path

from reproduce_vllm_lmcache.config import ROOT
from reproduce_vllm_lmcache.workspace.checkouts import git

PATCH_DIR = ROOT / "patches"


class PatchError(RuntimeError):
    """A patch neither is applied nor applies cleanly."""


class State(enum.Enum):
    APPLIED = "applied"
    UPSTREAM = "already in the source"
    APPLICABLE = "applicable"
    CONFLICT = "does not apply"


@dataclass(frozen=True)
class Patch:
    path: Path

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def reason(self) -> str:
        first = self.path.read_text().splitlines()[0] if self.path.stat().st_size else ""
        if not first.startswith("Reason: "):
            raise PatchError(f"{self.path}: the first line must be 'Reason: <one line>'")
        return first.removeprefix("Reason: ").strip()

    def header(self, field: str) -> str:
        """A ``Field: value`` line of the header (the lines before the diff), or ""."""
        for line in self.path.read_text().splitlines():
            if line.startswith("diff --git "):
                break
            if line.startswith(f"{field}: "):
                return line.removeprefix(f"{field}: ").strip()
        return ""

    @property
    def needed_to_run(self) -> bool:
        """Kept by REPRO_PATCHES=upstream (``Upstream mode: keep``, the default): the pinned
        stack does not run here without it. ``Upstream mode: drop`` marks a change under
        measurement, which upstream mode leaves out to show the before."""
        mode = self.header("Upstream mode") or "keep"
        if mode not in ("keep", "drop"):
            raise PatchError(f"{self.path}: 'Upstream mode: {mode}' (expected keep or drop)")
        return mode == "keep"

    @property
    def subject(self) -> str:
        return f"workspace patch {self.name}: {self.reason}"


def for_checkout(checkout: str) -> list[Patch]:
    return [Patch(p) for p in sorted((PATCH_DIR / checkout).glob("*.patch"))]


def _applies(repo: Path, patch: Patch, *flags: str) -> bool:
    return git(repo, "apply", "--check", *flags, str(patch.path), check=False).returncode == 0


def state(repo: Path, patch: Patch) -> State:
    log = git(repo, "log", "--format=%s", check=False).stdout.splitlines()
    if patch.subject in log:
        return State.APPLIED
    if _applies(repo, patch, "--reverse"):
        return State.UPSTREAM
    if _applies(repo, patch):
        return State.APPLICABLE
    return State.CONFLICT


def in_effect(checkout: str, name: str, mode: str) -> bool:
    """Whether patch ``name`` of ``checkout`` runs in REPRO_PATCHES mode ``mode``: committed in
    the checkout, and kept by that mode (upstream mode leaves out the ones marked drop)."""
    found = [p for p in for_checkout(checkout) if p.name == name]
    if not found or (mode != "all" and not found[0].needed_to_run):
        return False
    return state(ROOT / checkout, found[0]) in (State.APPLIED, State.UPSTREAM)


def apply(repo: Path, patch: Patch) -> State:
    """Bring one patch to an applied state; return the state found before."""
    found = state(repo, patch)
    if found is State.CONFLICT:
        detail = git(repo, "apply", "--check", str(patch.path), check=False).stderr.strip()
        raise PatchError(
            f"patch {patch.path} does not apply to {repo.name}/ ({detail}); fix the patch or your edits to those lines, then rerun"
        )
    if found is State.APPLICABLE:
        try:
            git(repo, "apply", "--index", str(patch.path))
            git(repo, "commit", "--quiet", "--no-verify", "-m", patch.subject)
        except subprocess.CalledProcessError as exc:
            raise PatchError(f"applying {patch.name} to {repo.name}/ failed: {exc.stderr.strip()}") from exc
    return found
