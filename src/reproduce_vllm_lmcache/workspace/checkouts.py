"""The editable source checkouts ``vllm/`` and ``LMCache/`` at their pinned versions.

Both ways of fetching end in the same shape: a git repository whose tag ``git_tag`` is the
pristine upstream release, with each workspace patch committed on top, so ``git status``
shows exactly the user's own edits and ``git diff <tag>`` everything that differs from
upstream. Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.workspace import fetch
from reproduce_vllm_lmcache.workspace.pins import Artifact, Source

BUILD_OUTPUTS = ["*.egg-info/", "/*/_version.py", "*.so", "/build/", "__pycache__/"]
GIT_IDENTITY = ["-c", "user.name=reproduce-vllm-lmcache", "-c", "user.email=repro@localhost"]


class CheckoutError(RuntimeError):
    """A checkout cannot be brought to the pinned state without losing something."""


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *GIT_IDENTITY, "-C", str(repo), *args],
        check=check,
        capture_output=True,
        text=True,
    )


def local_edits(repo: Path) -> list[str]:
    """Tracked files changed since the last commit (build outputs are untracked, ignored)."""
    out = git(repo, "status", "--porcelain", "--untracked-files=no").stdout
    return [line[3:] for line in out.splitlines() if line.strip()]


@contextmanager
def pristine_worktree(src: Source, prefix: str, built: bool = False) -> Iterator[Path]:
    """A temporary git worktree of ``src`` at its pristine release tag, removed afterwards.
    ``built``: also link the checkout's untracked build outputs (compiled extensions,
    ``_version.py``) into it, so the tree imports as the checkout does."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    tree = workdir / src.checkout
    git(src.path, "worktree", "prune", check=False)
    try:
        git(src.path, "worktree", "add", "--detach", str(tree), src.git_tag)
        if built:
            from reproduce_vllm_lmcache.workspace import trees  # it builds on this module's git()

            for rel in trees.build_outputs(src.path):
                if (tree / rel).parent.is_dir() and not (tree / rel).exists():
                    (tree / rel).symlink_to(src.path / rel)
        yield tree
    finally:
        git(src.path, "worktree", "remove", "--force", str(tree), check=False)
        shutil.rmtree(workdir, ignore_errors=True)


def at_pinned_version(src: Source) -> bool:
    return git(src.path, "rev-parse", "-q", "--verify", f"refs/tags/{src.git_tag}", check=False).returncode == 0


def git_reachable(url: str) -> bool:
    try:
        result = subprocess.run(
            ["git", "ls-remote", "--exit-code", url, "refs/tags/*"],
            capture_output=True,
            timeout=fetch.timeout(),
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except (subprocess.TimeoutExpired, OSError):
        return False
    return result.returncode == 0


def clone(src: Source, dest: Path) -> str:
    subprocess.run(
        ["git", "clone", "--quiet", "--depth", "1", "--branch", src.git_tag, src.git_url, str(dest)],
        check=True,
    )
    git(dest, "tag", "-f", src.git_tag)
    return f"git clone {src.git_url} @ {src.git_tag}"


def extract(tar: tarfile.TarFile, dest: Path) -> None:
    """Extract an sdist, refusing members that would land outside ``dest``.

    The checks run on every interpreter, so a bad archive is refused the same way
    everywhere (Python's ``filter="data"`` would instead strip a leading ``/`` and
    extract). That filter exists from 3.11.4 / 3.12 on; Debian 12's python3 is
    3.11.2, so older interpreters also get its ownership and mode rules here.
    """
    root = dest.resolve()
    for member in tar.getmembers():
        target = (root / member.name).resolve()
        link = root  # where a link points: symlinks from their folder, hard links from the top
        if member.issym():
            link = (target.parent / member.linkname).resolve()
        elif member.islnk():
            link = (root / member.linkname).resolve()
        if not (target.is_relative_to(root) and link.is_relative_to(root)) or member.isdev():
            raise CheckoutError(f"{tar.name}: refusing to extract {member.name!r} (outside the checkout or a device)")
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    for member in tar.getmembers():
        # As the data filter does: files belong to whoever runs setup (git refuses a
        # checkout owned by the sdist author's uid), no setuid or group/other write bits.
        member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
        member.mode &= 0o755
    tar.extractall(dest)


def from_sdist(src: Source, dest: Path) -> str:
    archive = fetch.cached(Artifact(src.pypi_name, src.sdist, src.sdist_sha256))
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        with tarfile.open(archive) as tar:
            extract(tar, Path(tmp))
        (top,) = Path(tmp).iterdir()
        top.rename(dest)
    git(dest, "init", "--quiet", "--initial-branch=workspace")
    # Files the editable builds regenerate are build outputs, not sources to track.
    (dest / ".git" / "info" / "exclude").write_text("\n".join(BUILD_OUTPUTS) + "\n")
    git(dest, "add", "--all")
    git(dest, "commit", "--quiet", "--no-verify", "-m", f"{src.key} {src.version} from {src.sdist} (sha256 {src.sdist_sha256})")
    git(dest, "tag", src.git_tag)
    return f"PyPI sdist {src.sdist}, sha256 verified"


def fetch_source(src: Source) -> str:
    """Create ``src.path`` at the pinned version; return how it was obtained."""
    mode = knobs.text("REPRO_SOURCE")
    if mode not in ("auto", "git", "sdist"):
        raise CheckoutError(f"REPRO_SOURCE={mode!r}: expected auto, git or sdist")
    partial = src.path.with_name(src.path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    use_git = mode == "git" or (mode == "auto" and git_reachable(src.git_url))
    try:
        how = clone(src, partial) if use_git else from_sdist(src, partial)
    except (subprocess.CalledProcessError, fetch.FetchError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        detail = getattr(exc, "stderr", None) or exc
        raise CheckoutError(
            f"cannot fetch {src.key} {src.version}: "
            + ("git clone failed" if use_git else f"{src.git_url} unreachable and the sdist failed")
            + f" ({detail}). Connect to GitHub or PyPI, or put {src.sdist} into {fetch.downloads_dir()}"
        ) from exc
    partial.rename(src.path)
    return how


def ensure(src: Source) -> str:
    """Make sure the checkout exists at the pinned version; never touch local edits."""
    if not src.path.exists():
        return fetch_source(src)
    if not (src.path / ".git").exists():
        raise CheckoutError(
            f"{src.checkout}/ exists but is not a git checkout made by setup; move it away (mv {src.checkout} {src.checkout}.old) and rerun"
        )
    if not at_pinned_version(src):
        edits = local_edits(src.path)
        hint = f" and has local edits ({', '.join(edits[:3])})" if edits else ""
        raise CheckoutError(
            f"{src.checkout}/ is not at {src.git_tag} as pins.toml asks{hint}; nothing was changed. "
            f"Keep your work with `mv {src.checkout} {src.checkout}.old`, then rerun setup"
        )
    return f"present at {src.git_tag}"


def state(path: Path, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """HEAD and edited files of a checkout, so results say what code produced them
    (``exclude``: sub-folders left out)."""
    spec = ["--", ".", *(f":(exclude){e}" for e in exclude)]

    def git(*args: str) -> str:
        # Only trailing newlines go: a porcelain line starts with a space (" M file").
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True).stdout.rstrip("\n")

    edits = git("status", "--porcelain", "--untracked-files=all", *spec).splitlines()
    diff = subprocess.run(["git", "-C", str(path), "diff", "HEAD", *spec], capture_output=True).stdout
    untracked = [line[3:] for line in edits if line.startswith("??")]
    digest = hashlib.sha256(diff)
    for name in sorted(untracked):
        file = path / name
        digest.update(name.encode() + (file.read_bytes() if file.is_file() else b""))
    return {
        "head": git("rev-parse", "HEAD"),
        "edited_files": [line[3:] for line in edits],
        # Changes when any edit changes, even to a file that was already edited.
        "edits_sha256": digest.hexdigest() if edits else "",
    }
