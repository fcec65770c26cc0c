"""``repro patches series``: the workspace's patches as ``git format-patch`` series against the
pinned releases, one per checkout, ready for ``git am`` or ``git send-email`` upstream.

Each patch becomes one commit on the pristine release tag (in a temporary worktree): a subject
line (its ``Bug:`` header, else its reason), a body wrapped at 72 columns (why, what, measured
effect, how to reproduce) and a ``Signed-off-by`` of the person exporting (vLLM requires the
DCO; the sign-off is yours to give, so the identity comes from your git config or
GIT_AUTHOR_NAME / GIT_AUTHOR_EMAIL, never from the workspace). Standard library only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

from reproduce_vllm_lmcache.workspace import checkouts, patches, pins
from reproduce_vllm_lmcache.workspace.checkouts import git

WIDTH = 72


def identity() -> tuple[str, str]:
    """Who signs off: GIT_AUTHOR_NAME/EMAIL, else git config user.name/email; else an error."""

    def config(key: str) -> str:
        found = subprocess.run(["git", "config", "--get", key], capture_output=True, text=True)
        return found.stdout.strip()

    name = os.environ.get("GIT_AUTHOR_NAME") or config("user.name")
    email = os.environ.get("GIT_AUTHOR_EMAIL") or config("user.email")
    if not name or not email:
        raise patches.PatchError(
            "Signed-off-by needs your identity: git config --global user.name 'Your Name' and "
            "git config --global user.email you@example.com (or GIT_AUTHOR_NAME / GIT_AUTHOR_EMAIL)"
        )
    return name, email


def subject(patch: patches.Patch) -> str:
    """One line of at most 72 characters, without a trailing period."""
    text = (patch.header("Bug") or patch.reason).rstrip(".")
    return text if len(text) <= WIDTH else text[: WIDTH - 3].rsplit(" ", 1)[0] + "..."


def parts(patch: patches.Patch) -> list[tuple[str, str]]:
    """``Part: FILE: SUBJECT`` header lines: a patch that bundles several changes is exported as
    one commit per part (each the patch's hunks in FILE); [] for a single change."""
    found = []
    for line in patch.path.read_text().splitlines():
        if line.startswith("diff --git "):
            break
        if line.startswith("Part: "):
            path, _, title = line.removeprefix("Part: ").partition(": ")
            found.append((path.strip(), title.strip()))
    return found


def message(patch: patches.Patch, signer: tuple[str, str], part: tuple[int, int, str] | None = None) -> str:
    """The commit message: subject, wrapped paragraphs, the reproduction, the sign-off. ``part``
    (k, n, subject): the k-th of n commits of a bundled patch."""
    title = subject(patch)
    paragraphs = []
    if part is not None:
        k, n, title = part
        paragraphs.append(("Part", f"{k} of {n} of the workspace patch {patch.name}; the measured effect is that of all {n}"))
    paragraphs += [
        ("Why", patch.reason),
        ("What", patch.header("What")),
        ("Measured effect", patch.header("Effect")),
    ]
    body = [textwrap.fill(f"{label}: {text}", WIDTH) for label, text in paragraphs if text]
    repro = [line.removeprefix("Reproduce: ") for line in patch.path.read_text().splitlines() if line.startswith("Reproduce: ")]
    if repro:
        body.append("Reproduce (with the reproduce-vllm-lmcache workspace):\n\n" + "\n".join(f"    {line}" for line in repro))
    return f"{title}\n\n" + "\n\n".join(body) + f"\n\nSigned-off-by: {signer[0]} <{signer[1]}>\n"


def export(out: Path) -> list[Path]:
    """Write out/<checkout>/NNNN-*.patch for every checkout; the paths written."""
    signer = identity()
    written: list[Path] = []
    for src in pins.sources():
        if not src.path.is_dir():
            raise patches.PatchError(f"{src.checkout}/ is missing: run scripts/setup.sh first")
        target = out / src.checkout
        shutil.rmtree(target, ignore_errors=True)
        with checkouts.pristine_worktree(src, "repro-series-") as tree:
            env = {
                "GIT_AUTHOR_NAME": signer[0],
                "GIT_AUTHOR_EMAIL": signer[1],
                "GIT_COMMITTER_NAME": signer[0],
                "GIT_COMMITTER_EMAIL": signer[1],
            }
            for patch in patches.for_checkout(src.checkout):
                split = parts(patch)
                steps = [([f"--include={path}"], (k, len(split), title)) for k, (path, title) in enumerate(split, 1)] or [([], None)]
                for include, part in steps:
                    git(tree, "apply", "--index", *include, str(patch.path))
                    msg = tree.parent / "message"
                    msg.write_text(message(patch, signer, part))
                    subprocess.run(["git", "-C", str(tree), "commit", "-q", "-F", str(msg)], check=True, env={**os.environ, **env})
                left = git(tree, "apply", "--check", str(patch.path), check=False).returncode == 0
                if split and left:
                    raise patches.PatchError(f"{patch.path}: its Part: lines leave hunks out (every file of the diff needs a part)")
            made = git(tree, "format-patch", "-q", "-o", str(target), f"{src.git_tag}..HEAD").stdout.split()
            written += [Path(p) for p in made] or sorted(target.glob("*.patch"))
    return written
