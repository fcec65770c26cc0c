"""The five programs' command lines (LMCache server, vLLM, Redis, the coordinator, the preload
server), built from the typed knobs of settings.Settings; bash runs exactly what these return
(``repro argv NAME``), the tests read them."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from reproduce_vllm_lmcache.knobs import KnobError
from reproduce_vllm_lmcache.servers.settings import Settings, is_loopback, venv_bin
from reproduce_vllm_lmcache.workspace import upstream

TRACE_ENV = {
    "VLLM_LOGGING_CONFIG_PATH": str(Path(__file__).with_name("vllm_trace_logging.json")),
    "LMCACHE_LOG_LEVEL": "DEBUG",
}


def preload_env(s: Settings) -> dict[str, str]:
    """LD_PRELOAD for vLLM: the chosen allocator (REPRO_VLLM_MALLOC) and, in the fast layout,
    torch's libgomp, after what the caller's LD_PRELOAD already holds."""
    libs = [p for p in os.environ.get("LD_PRELOAD", "").split(":") if p]
    if s.vllm_malloc and s.vllm_malloc not in libs:
        libs.insert(0, s.vllm_malloc)
    # vLLM preloads torch's libgomp into the processes it spawns (thread binding needs it);
    # a forked EngineCore inherits the API server's libraries, so the API server gets it.
    spec = importlib.util.find_spec("torch")
    if s.vllm_layout == "fast" and sys.platform == "linux" and spec and spec.submodule_search_locations:
        gomp = sorted(Path(spec.submodule_search_locations[0], "lib").glob("libgomp*.so*"))
        libs += [str(gomp[0])] if gomp and str(gomp[0]) not in libs else []
    return {"LD_PRELOAD": ":".join(libs)} if libs else {}


def fast_layout_env() -> dict[str, str]:
    """vLLM settings of the fast layout (see vllm_layout)."""
    return {
        # With the uni executor the worker runs inside the EngineCore process; vLLM's CPU
        # platform allows that only when this is off.
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        # The EngineCore is forked from the API server, which has imported vLLM, torch and
        # LMCache already (respected by workspace patch 0003; vLLM's CPU default is spawn).
        "VLLM_WORKER_MULTIPROC_METHOD": "fork",
    }


def kv_transfer_config(s: Settings) -> dict[str, object]:
    return {
        "kv_connector": "LMCacheMPConnector",
        "kv_role": "kv_both",
        "kv_connector_module_path": "lmcache.integration.vllm.lmcache_mp_connector",
        "kv_load_failure_policy": s.kv_load_failure_policy,
        "kv_connector_extra_config": {
            "lmcache.mp.host": f"tcp://{s.host}",
            "lmcache.mp.port": s.lmcache_port,
            "lmcache.mp.mp_transfer_mode": s.transfer_mode,
            # LMCache patch 0009 (the pristine adapter ignores the key).
            "lmcache.mp.lookup_wait_ms": s.lookup_wait_ms,
        },
    }


def lmcache(s: Settings) -> list[str]:
    argv = [
        "env",
        f"LMCACHE_TRACK_USAGE={'true' if s.lmcache_telemetry else 'false'}",
        "LMCACHE_DISABLE_BANNER=1",
        *(["LMCACHE_LOG_LEVEL=DEBUG"] if s.trace else []),
        *(f"{k}={v}" for k, v in code_env(s).items()),
        str(venv_bin("lmcache")),
        "server",
        "--host",
        s.host,
        "--port",
        str(s.lmcache_port),
        "--http-host",
        s.host,
        "--http-port",
        str(s.lmcache_http_port),
        "--l1-size-gb",
        f"{s.l1_size_gb:g}",
        "--eviction-policy",
        s.eviction_policy,
        "--chunk-size",
        str(s.chunk_size),
        # Both transfer modes, so vLLM may be restarted in either against one server.
        "--supported-transfer-mode",
        "auto",
    ]
    if s.lmcache_shm_name:
        argv += ["--shm-name", s.lmcache_shm_name]
    if s.l2 != "none":
        argv += ["--l2-adapter", json.dumps(l2_adapter(s))]
    if s.l2 != "none" and s.l2_prefetch_policy != "default":
        argv += ["--l2-prefetch-policy", s.l2_prefetch_policy]
    if s.coordinator_url:  # register, heartbeat and report cache events (store, evict, access)
        argv += ["--coordinator-url", s.coordinator_url, "--coordinator-event-reporting", "--coordinator-advertise-ip", s.host]
    if s.instance_id:
        argv += ["--instance-id", s.instance_id]
    if s.trace:
        argv += ["--trace-level", "storage", "--trace-output", s.trace_file]
    return argv + list(s.lmcache_extra_args)


def l2_adapter(s: Settings) -> dict[str, object]:
    """LMCache's own L2 adapter spec: ``resp`` (its native Redis client) or ``fs`` (files)."""
    if s.l2 == "redis":
        return {"type": "resp", "host": s.store_host, "port": s.redis_port}
    if s.l2 == "disk":
        return {"type": "fs", "base_path": s.l2_disk_dir}
    raise KnobError(f"REPRO_L2={s.l2!r}: no L2 adapter")


def redis(s: Settings) -> list[str]:
    """A Redis server for LMCache's L2: loopback only (or, under scripts/nodes.sh, the store
    namespace's address, which only the nodes' namespaces can reach: there Redis's protected
    mode, which answers every non-loopback client DENIED, is off), own port and folder,
    nothing persisted."""
    loopback = is_loopback(s.store_host)
    return [
        s.redis_server,
        "--bind",
        s.store_host,
        "--port",
        str(s.redis_port),
        "--dir",
        s.redis_dir,
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes" if loopback or not s.netns else "no",
    ]


def coordinator(s: Settings) -> list[str]:
    """LMCache's fleet coordinator (directory of servers and of their cache events)."""
    return [
        "env",
        "LMCACHE_DISABLE_BANNER=1",
        *(f"{k}={v}" for k, v in code_env(s).items()),
        str(venv_bin("lmcache")),
        "coordinator",
        "--host",
        s.store_host,
        "--port",
        str(s.coordinator_port),
        "--chunk-size",
        str(s.chunk_size),
    ]


def vllm_env(s: Settings) -> dict[str, str]:
    return {
        "VLLM_CPU_KVCACHE_SPACE": str(s.vllm_kv_space_gb),
        "VLLM_CPU_OMP_THREADS_BIND": s.threads_bind,
        "VLLM_HOST_IP": s.host,
        "GLOO_SOCKET_IFNAME": "lo" if sys.platform == "linux" else "lo0",
        "HF_HUB_OFFLINE": "1" if Path(s.model).is_dir() else os.environ.get("HF_HUB_OFFLINE", "0"),
        "VLLM_NO_USAGE_STATS": "1",
        **(fast_layout_env() if s.vllm_layout == "fast" else {}),
        **preload_env(s),
        **(TRACE_ENV if s.trace else {}),
        **code_env(s),
    }


def code_env(s: Settings) -> dict[str, str]:
    """Where the servers import vLLM and LMCache from: the checkouts, or first on PYTHONPATH the
    trees of REPRO_CODE_TREES (an A/B arm's code state) and, in upstream mode, the pristine tree
    (the vLLM process imports the connector from them too)."""
    path = os.pathsep.join(p for p in (*s.code_trees, upstream.pythonpath(s.patches)) if p)
    return {"PYTHONPATH": path} if path else {}


def vllm(s: Settings, connector: bool | None = None) -> list[str]:
    argv = ["env", *(f"{k}={v}" for k, v in vllm_env(s).items())]
    argv += [
        str(venv_bin("vllm")),
        "serve",
        s.model,
        "--host",
        s.host,
        "--port",
        str(s.vllm_port),
        "--dtype",
        s.dtype,
        "--max-model-len",
        str(s.max_model_len),
        "--max-num-seqs",
        str(s.max_num_seqs),
        "--block-size",
        str(s.block_size),
        "--enable-prompt-tokens-details",
        "--enable-prefix-caching" if s.prefix_caching else "--no-enable-prefix-caching",
    ]
    if s.enforce_eager:
        argv.append("--enforce-eager")
    if s.vllm_layout == "fast":
        argv += ["--distributed-executor-backend", "uni"]
    if s.connector if connector is None else connector:
        argv += ["--kv-transfer-config", json.dumps(kv_transfer_config(s))]
    if s.trace:
        argv.append("--enable-log-requests")
    return argv + list(s.vllm_extra_args)


def preload(s: Settings, socket_path: str) -> list[str]:
    """The preload server, with the environment its forked servers inherit at load time (its
    LD_PRELOAD too: the allocator a forked server runs with is the preload server's)."""
    with_vllm = s.preload_vllm
    env = {
        # What vLLM reads while it is imported, as a vLLM start with these knobs has it.
        **(vllm_env(s) if with_vllm else {**(fast_layout_env() if s.vllm_layout == "fast" else {}), **preload_env(s)}),
        # As vLLM sets it before it imports Inductor (no compile worker pool in a server).
        "TORCHINDUCTOR_COMPILE_THREADS": "1",
    }
    return [
        "env",
        *(f"{k}={v}" for k, v in env.items()),
        sys.executable,
        "-m",
        "reproduce_vllm_lmcache.servers.preload",
        "serve",
        "--socket",
        socket_path,
        *(["--with-vllm"] if with_vllm else []),
    ]
