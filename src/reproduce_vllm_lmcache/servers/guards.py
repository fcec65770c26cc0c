"""Guards the workspace applies around upstream behaviour that can hurt a user.

* KV namespace: LMCache keys entries by the model path, not by dtype, so a vLLM restarted
  with another dtype against the same LMCache server finds entries of the wrong size. Before
  vLLM starts, the KV identity it will use is compared with the one recorded for the running
  LMCache server (identified by its ``kv_events.incarnation``); on a mismatch the server's L1
  is cleared (``REPRO_NAMESPACE_GUARD=clear``) or the start is refused (``refuse``). With the
  workspace's patch 0004-kv-namespace-carries-layout running (REPRO_PATCHES=all) the connector
  keys KV by dtype and layout itself, and the guard says it is not needed.
* Memory: vLLM's KV space + LMCache L1 + model weights + headroom must fit the memory that is
  available, and L1 must fit /dev/shm.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import psutil

from reproduce_vllm_lmcache import config
from reproduce_vllm_lmcache.servers.settings import KnobError, Settings
from reproduce_vllm_lmcache.workspace import patches

GIB = 1 << 30
GUARD_MODES = ("clear", "refuse", "off")
NAMESPACE_PATCH = "0004-kv-namespace-carries-layout"


def kv_identity(settings: Settings) -> dict[str, Any]:
    """What makes stored KV incompatible: model, dtype, chunk size."""
    return {"model": settings.model, "dtype": settings.dtype, "chunk_size": settings.chunk_size}


def stamp_path(settings: Settings) -> Path:
    return config.ROOT / ".repro" / f"lmcache-{settings.lmcache_http_port}-namespace.json"


def lmcache_incarnation(settings: Settings) -> int:
    # The standard library's client: this runs before every vLLM start (requests costs 0.2-0.4 s to import).
    from urllib.error import URLError
    from urllib.request import urlopen

    from reproduce_vllm_lmcache.servers.settings import ServerDown

    url = f"{settings.lmcache_http_url}/status"
    try:
        with urlopen(url, timeout=10) as response:
            return int(json.load(response)["kv_events"]["incarnation"])
    except (URLError, OSError) as exc:
        raise ServerDown(f"the LMCache server is not answering at {url} ({exc}); start it with scripts/start_lmcache.sh") from exc


def clear_l1(settings: Settings) -> None:
    from reproduce_vllm_lmcache.servers import http_client, lmcache_api

    with http_client.session() as client:
        lmcache_api.clear_l1(client, settings.lmcache_http_url)


def check_namespace(settings: Settings, mode: str) -> str:
    """Compare the KV identity about to be used with the one the LMCache server holds."""
    if mode not in GUARD_MODES:
        raise KnobError(f"REPRO_NAMESPACE_GUARD={mode!r}: expected one of {', '.join(GUARD_MODES)}")
    if mode == "off":
        return "namespace guard off"
    if patches.in_effect("LMCache", NAMESPACE_PATCH, settings.patches):
        return f"namespace guard not needed: patch {NAMESPACE_PATCH} keys LMCache's KV by dtype and layout"
    incarnation = lmcache_incarnation(settings)
    identity = kv_identity(settings)
    path = stamp_path(settings)
    previous = json.loads(path.read_text()) if path.exists() else {}
    note = f"LMCache holds KV of {identity}"
    if previous.get("incarnation") == incarnation and previous.get("identity") != identity:
        old = previous.get("identity")
        if mode == "refuse":
            raise KnobError(
                f"the LMCache server at {settings.lmcache_http_url} holds KV of {old}, this vLLM would use "
                f"{identity}: same keys, incompatible tensors. Restart LMCache, clear it "
                f"(curl -X POST {settings.lmcache_http_url}/cache/clear) or set REPRO_NAMESPACE_GUARD=clear"
            )
        clear_l1(settings)
        note = f"LMCache held KV of {old}; cleared its L1 before serving {identity}"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"incarnation": incarnation, "identity": identity}) + "\n")
    return note


def model_bytes(model: str) -> int:
    path = Path(model)
    return sum(p.stat().st_size for p in path.glob("*.safetensors")) if path.is_dir() else 0


def memory_problem(need: dict[str, float], available: float, shm_free: float | None, l1: float) -> str | None:
    """Why the planned servers would not fit, with numbers, or None."""
    total = sum(need.values())
    parts = ", ".join(f"{k} {v / GIB:.1f}" for k, v in need.items())
    if total > available:
        return (
            f"not enough memory: {parts} = {total / GIB:.1f} GiB needed, {available / GIB:.1f} GiB available. "
            "Lower REPRO_L1_SIZE_GB or REPRO_VLLM_KV_SPACE_GB, or stop other programs"
        )
    if shm_free is not None and l1 > shm_free:
        return (
            f"/dev/shm has {shm_free / GIB:.1f} GiB free, LMCache L1 needs {l1 / GIB:.1f} GiB; lower REPRO_L1_SIZE_GB "
            "or enlarge /dev/shm (mount -o remount,size=...)"
        )
    return None


def check_memory(settings: Settings, server: str, headroom_gib: float) -> str:
    need: dict[str, float] = {"headroom": headroom_gib * GIB}
    if server == "lmcache":
        need["LMCache L1"] = settings.l1_size_gb * GIB
    else:
        need["vLLM KV space"] = settings.vllm_kv_space_gb * GIB
        need["model weights"] = float(model_bytes(settings.model))
    shm = Path("/dev/shm")
    shm_free = float(shutil.disk_usage(shm).free) if shm.is_dir() else None
    l1 = settings.l1_size_gb * GIB if server == "lmcache" else 0.0
    problem = memory_problem(need, float(psutil.virtual_memory().available), shm_free, l1)
    if problem:
        raise KnobError(problem)
    return f"memory ok: {sum(need.values()) / GIB:.1f} GiB needed, {psutil.virtual_memory().available / GIB:.1f} GiB available"
