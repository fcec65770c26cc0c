"""Downloads into the workspace cache, verified by sha256. Standard library only."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import urllib.error
from pathlib import Path

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.workspace.pins import Artifact


class FetchError(RuntimeError):
    """A download failed; the message says what and how to fix it."""


def downloads_dir() -> Path:
    path = knobs.path("REPRO_CACHE_DIR") / "downloads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def timeout() -> float:
    return float(knobs.text("REPRO_NET_TIMEOUT"))


def open_url(url: str, accept: str | None = None):  # type: ignore[no-untyped-def]
    import urllib.request  # http.client, ssl, email: ~30 ms, so only when something is fetched

    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    return urllib.request.urlopen(request, timeout=timeout())


def reachable(url: str) -> bool:
    try:
        with open_url(url):
            return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def download(url: str, dest: Path, sha256: str | None = None) -> Path:
    """Stream ``url`` to ``dest`` (via a .part file), printing progress, checking sha256."""
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with open_url(url) as response, part.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done, last, started = 0, 0.0, time.monotonic()
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                digest.update(block)
                done += len(block)
                now = time.monotonic()
                if now - last > 2 or (total and done == total):
                    last = now
                    pct = f"{100 * done / total:5.1f}%" if total else ""
                    print(f"      {dest.name}: {done / 1e6:7.1f} MB {pct}", file=sys.stderr)
            elapsed = time.monotonic() - started
    except OSError as exc:
        part.unlink(missing_ok=True)
        if getattr(exc, "errno", None) == 28:
            raise FetchError(f"disk full while writing {dest}: free space and rerun") from exc
        raise FetchError(f"download of {url} failed: {exc}") from exc
    if sha256 and digest.hexdigest() != sha256:
        part.unlink(missing_ok=True)
        raise FetchError(
            f"sha256 mismatch for {dest.name}: got {digest.hexdigest()}, pinned {sha256} "
            f"(source {url}); the pin in pins.toml or the source is wrong"
        )
    part.replace(dest)
    print(f"      {dest.name}: {done / 1e6:.1f} MB in {elapsed:.1f} s", file=sys.stderr)
    return dest


def pypi_file_url(project: str, filename: str) -> str:
    """The download URL of one release file, from the PEP 691 JSON simple index."""
    index = knobs.text("REPRO_PYPI_URL").rstrip("/")
    url = f"{index}/{project}/"
    try:
        with open_url(url, accept="application/vnd.pypi.simple.v1+json") as response:
            files = json.load(response)["files"]
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        raise FetchError(f"PyPI index {url} not reachable: {exc}") from exc
    for entry in files:
        if entry["filename"] == filename:
            return str(entry["url"])
    raise FetchError(f"{filename} is not listed on {url}")


def cached(artifact: Artifact) -> Path:
    """The verified local copy of a PyPI artifact, downloading it on first use."""
    dest = downloads_dir() / artifact.filename
    if dest.exists():
        if sha256_of(dest) == artifact.sha256:
            return dest
        print(f"      {dest.name}: cached copy has the wrong sha256, fetching again", file=sys.stderr)
        dest.unlink()
    try:
        return download(pypi_file_url(artifact.project, artifact.filename), dest, artifact.sha256)
    except FetchError as exc:
        raise FetchError(f"{exc}. To work offline, place {artifact.filename} (sha256 {artifact.sha256}) in {downloads_dir()}") from exc


def copy_verified(src: Path, dest: Path, sha256: str) -> bool:
    """Copy ``src`` to ``dest`` if its sha256 matches; return whether it did."""
    if not src.is_file() or sha256_of(src) != sha256:
        return False
    part = dest.with_name(dest.name + ".part")
    shutil.copyfile(src, part)
    part.replace(dest)
    return True


def env_list(*names: str) -> list[str]:
    """Whitespace-separated values of the named environment variables, in order."""
    values: list[str] = []
    for name in names:
        values += os.environ.get(name, "").split()
    return values
