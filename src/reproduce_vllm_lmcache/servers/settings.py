"""The servers' knobs of defaults.env, validated and typed (Settings), and the platform probes
they depend on (CPU flags for the dtype, the vLLM process layout, thread binding).

The servers' knobs are checked here, and each script's own knobs in experiments/preflight.py,
both before any server starts; servers/commands.py turns Settings into command lines, and bash
scripts only run what that builds.
"""

from __future__ import annotations

import ipaddress
import os
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.config import ROOT
from reproduce_vllm_lmcache.knobs import KnobError
from reproduce_vllm_lmcache.workspace import system as packages
from reproduce_vllm_lmcache.workspace import upstream

DTYPES = ("float32", "bfloat16", "float16")
TRANSFER_MODES = ("lmcache_driven", "engine_driven")
EVICTION_POLICIES = ("LRU", "ARC", "IsolatedLRU", "noop")
FAILURE_POLICIES = ("recompute", "fail")
L2_KINDS = ("none", "redis", "disk")
VLLM_LAYOUTS = ("fast", "upstream")


class ServerDown(RuntimeError):
    """A server the client needs does not answer; the message says which and how to start it."""


def cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def resolve_dtype(value: str, machine: str, flags: set[str]) -> str:
    """``auto``: bfloat16 only where the CPU computes it natively (AVX-512 BF16), else float32."""
    if value == "auto":
        native_bf16 = machine in ("x86_64", "AMD64") and "avx512_bf16" in flags
        return "bfloat16" if native_bf16 else "float32"
    if value not in DTYPES:
        raise KnobError(f"REPRO_DTYPE={value!r}: expected auto or one of {', '.join(DTYPES)}")
    return value


def _int(env: dict[str, str], key: str, minimum: int = 1, maximum: int | None = None) -> int:
    return knobs.integer(key, env, minimum, maximum)


def _float(env: dict[str, str], key: str) -> float:
    return knobs.number(key, env)


def _choice(env: dict[str, str], key: str, choices: tuple[str, ...]) -> str:
    return knobs.choice(key, choices, env)


# REPRO_TRACE=1 in vLLM's process: its log at DEBUG with millisecond timestamps (the workspace's
# logging config), and the connector's (LMCache's logger) at DEBUG.
def _flag(env: dict[str, str], key: str) -> bool:
    return _choice(env, key, ("0", "1")) == "1"


def _port(env: dict[str, str], key: str) -> int:
    return _int(env, key, 1, 65535)


def is_loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


def venv_bin(name: str) -> Path:
    """A console script of the environment this code runs in."""
    return Path(sys.executable).with_name(name)


def extra_args(env: dict[str, str], key: str) -> tuple[str, ...]:
    """Shell-quoted words appended to a server's command line (e.g. ``--foo 1 --bar 'a b'``)."""
    return knobs.words(key, env)


def vllm_layout(value: str, system: str) -> tuple[str, str]:
    """The process layout vLLM runs in, and a note when the platform made it fall back.

    ``fast``: the worker runs inside the EngineCore process (uni executor, which vLLM's CPU
    platform allows only with VLLM_ENABLE_V1_MULTIPROCESSING=0): one process and one import of
    vLLM + torch + LMCache fewer. Verified on Linux only, so elsewhere it falls back.
    """
    if value not in VLLM_LAYOUTS:
        raise KnobError(f"REPRO_VLLM_LAYOUT={value!r}: expected one of {', '.join(VLLM_LAYOUTS)}")
    if value == "fast" and system != "linux":
        return "upstream", f"REPRO_VLLM_LAYOUT=fast is verified on Linux only; using vLLM's upstream layout on {system}"
    return value, ""


def code_trees(env: dict[str, str]) -> tuple[str, ...]:
    """REPRO_CODE_TREES: existing source trees (each holding a ``vllm`` or ``lmcache`` package)."""
    raw = knobs.text("REPRO_CODE_TREES", env)
    # Relative entries are taken from the repository root, as every path knob is.
    found = tuple(str(p if p.is_absolute() else ROOT / p) for p in (Path(x).expanduser() for x in raw.split(os.pathsep) if x))
    for tree in found:
        if not any((Path(tree) / pkg / "__init__.py").is_file() for pkg in ("vllm", "lmcache")):
            raise KnobError(f"REPRO_CODE_TREES={raw!r}: {tree} holds no vllm or lmcache package (scripts/ab.sh makes such trees)")
    return found


def threads_bind(value: str, cores: int) -> str:
    if value == "all":
        return f"0-{cores - 1}" if sys.platform == "linux" else "nobind"
    return value


@dataclass(frozen=True)
class Settings:
    host: str
    lmcache_port: int
    lmcache_http_port: int
    l1_size_gb: float
    eviction_policy: str
    chunk_size: int
    block_size: int
    lmcache_telemetry: bool
    lmcache_shm_name: str
    vllm_port: int
    model: str
    dtype: str
    max_model_len: int
    max_num_seqs: int
    vllm_kv_space_gb: int
    transfer_mode: str
    lookup_wait_ms: float
    prefix_caching: bool
    enforce_eager: bool
    kv_load_failure_policy: str
    threads_bind: str
    prompt_tokens: tuple[int, ...]
    max_tokens: int
    connector: bool
    l2: str
    redis_server: str
    redis_port: int
    redis_dir: str
    l2_disk_dir: str
    vllm_layout: str
    vllm_layout_note: str
    vllm_malloc: str
    vllm_extra_args: tuple[str, ...]
    lmcache_extra_args: tuple[str, ...]
    preload_vllm: bool
    # REPRO_TRACE: both servers record what `repro trace` draws (debug logs with milliseconds,
    # LMCache's storage trace file in REPRO_LOG_DIR).
    trace: bool
    trace_file: str
    # REPRO_PATCHES: all (every workspace patch, the checkouts as they are) or upstream (the
    # pristine upstream LMCache plus only the patches needed to run, on the servers' PYTHONPATH).
    patches: str = "all"
    # Source trees the servers import first (REPRO_CODE_TREES: worktrees at other git refs, e.g.
    # an A/B arm's "before"); empty: the checkouts.
    code_trees: tuple[str, ...] = ()
    # Several nodes (scripts/nodes.sh): the network namespace the start scripts run in, the
    # address of the shared services (Redis, the coordinator), the coordinator's port and URL,
    # this LMCache server's name there, and what its L1 keeps of what it loads from L2.
    netns: str = ""
    store_host: str = "127.0.0.1"
    coordinator_port: int = 9300
    coordinator_url: str = ""
    instance_id: str = ""
    l2_prefetch_policy: str = "default"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ) if env is None else env
        port_knobs = ("REPRO_LMCACHE_PORT", "REPRO_LMCACHE_HTTP_PORT", "REPRO_VLLM_PORT", "REPRO_REDIS_PORT", "REPRO_COORDINATOR_PORT")
        ports = {key: _port(env, key) for key in port_knobs}
        if len(set(ports.values())) != len(ports):
            raise KnobError(f"ports must differ: {ports}")
        host = knobs.text("REPRO_HOST", env)
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise KnobError(f"REPRO_HOST={host!r}: servers bind to loopback only (127.0.0.1, localhost or ::1)")
        netns = knobs.text("REPRO_NETNS", env)
        store_host = knobs.text("REPRO_STORE_HOST", env) or host
        if store_host != host and not netns and not is_loopback(store_host):
            raise KnobError(
                f"REPRO_STORE_HOST={store_host!r}: a loopback address, unless REPRO_NETNS puts the servers "
                "in a network namespace (scripts/nodes.sh), where it is an address of that namespace's link"
            )
        raw_lengths = knobs.text("REPRO_PROMPT_TOKENS", env)
        try:
            lengths = tuple(int(x) for x in raw_lengths.replace(" ", ",").split(",") if x)
        except ValueError:
            raise KnobError(f"REPRO_PROMPT_TOKENS={raw_lengths!r}: expected numbers like 640,3000") from None
        max_model_len = _int(env, "REPRO_MAX_MODEL_LEN", 16)
        max_tokens = _int(env, "REPRO_MAX_TOKENS")
        for length in lengths:
            if length < 1 or length + max_tokens > max_model_len:
                raise KnobError(
                    f"REPRO_PROMPT_TOKENS: {length} + {max_tokens} output tokens does not fit "
                    f"REPRO_MAX_MODEL_LEN={max_model_len}; shorten the prompt or raise the limit"
                )
        chunk_size, block_size = _int(env, "REPRO_CHUNK_SIZE", 16), _int(env, "REPRO_BLOCK_SIZE", 16)
        if block_size % 32:
            raise KnobError(
                f"REPRO_BLOCK_SIZE={block_size}: vLLM's CPU attention takes blocks in multiples of 32 "
                "(with 16 its engine fails to start: 'No common block size')"
            )
        if chunk_size % block_size:
            raise KnobError(
                f"REPRO_CHUNK_SIZE={chunk_size} is not a multiple of REPRO_BLOCK_SIZE={block_size} "
                "(LMCacheMPConnector needs whole vLLM blocks per chunk)"
            )
        model = knobs.text("REPRO_MODEL", env)
        model_path = knobs.path("REPRO_MODEL", env)
        looks_local = model.startswith((".", "/", "~")) or model.startswith("models/") or model.count("/") != 1
        if looks_local and not model_path.is_dir():
            raise KnobError(f"REPRO_MODEL={model!r}: no such model directory ({model_path}); run scripts/setup.sh")
        layout, layout_note = vllm_layout(knobs.text("REPRO_VLLM_LAYOUT", env), sys.platform)
        trace = _flag(env, "REPRO_TRACE")
        return cls(
            host=host,
            lmcache_port=ports["REPRO_LMCACHE_PORT"],
            lmcache_http_port=ports["REPRO_LMCACHE_HTTP_PORT"],
            l1_size_gb=_float(env, "REPRO_L1_SIZE_GB"),
            eviction_policy=_choice(env, "REPRO_EVICTION_POLICY", EVICTION_POLICIES),
            chunk_size=chunk_size,
            block_size=block_size,
            lmcache_telemetry=_choice(env, "REPRO_LMCACHE_TELEMETRY", ("true", "false")) == "true",
            lmcache_shm_name=knobs.text("REPRO_LMCACHE_SHM_NAME", env),
            vllm_port=ports["REPRO_VLLM_PORT"],
            model=str(model_path) if model_path.is_dir() else model,
            dtype=resolve_dtype(knobs.text("REPRO_DTYPE", env), platform.machine(), cpu_flags()),
            max_model_len=max_model_len,
            max_num_seqs=_int(env, "REPRO_MAX_NUM_SEQS"),
            vllm_kv_space_gb=_int(env, "REPRO_VLLM_KV_SPACE_GB"),
            transfer_mode=_choice(env, "REPRO_TRANSFER_MODE", TRANSFER_MODES),
            lookup_wait_ms=knobs.number("REPRO_LOOKUP_WAIT_MS", env, positive=False),
            prefix_caching=_flag(env, "REPRO_PREFIX_CACHING"),
            enforce_eager=_flag(env, "REPRO_ENFORCE_EAGER"),
            kv_load_failure_policy=_choice(env, "REPRO_KV_LOAD_FAILURE_POLICY", FAILURE_POLICIES),
            threads_bind=threads_bind(knobs.text("REPRO_THREADS_BIND", env), os.cpu_count() or 1),
            prompt_tokens=lengths,
            max_tokens=max_tokens,
            connector=_flag(env, "REPRO_CONNECTOR"),
            l2=_choice(env, "REPRO_L2", L2_KINDS),
            redis_server=knobs.text("REPRO_REDIS_SERVER", env),
            redis_port=ports["REPRO_REDIS_PORT"],
            redis_dir=str(knobs.path("REPRO_REDIS_DIR", env)),
            l2_disk_dir=str(knobs.path("REPRO_L2_DISK_DIR", env)),
            vllm_layout=layout,
            vllm_layout_note=layout_note,
            vllm_malloc=packages.malloc_library(knobs.text("REPRO_VLLM_MALLOC", env), sys.platform),
            vllm_extra_args=extra_args(env, "REPRO_VLLM_EXTRA_ARGS"),
            lmcache_extra_args=extra_args(env, "REPRO_LMCACHE_EXTRA_ARGS"),
            preload_vllm=_flag(env, "REPRO_PRELOAD_VLLM"),
            trace=trace,
            trace_file=str(knobs.path("REPRO_LOG_DIR", env) / "lmcache-trace.lct") if trace else "",
            patches=_choice(env, "REPRO_PATCHES", upstream.MODES),
            code_trees=code_trees(env),
            netns=netns,
            store_host=store_host,
            coordinator_port=ports["REPRO_COORDINATOR_PORT"],
            coordinator_url=knobs.text("REPRO_COORDINATOR_URL", env),
            instance_id=knobs.text("REPRO_LMCACHE_INSTANCE_ID", env),
            l2_prefetch_policy=_choice(env, "REPRO_L2_PREFETCH_POLICY", ("default", "retain")),
        )

    # --- URLs ------------------------------------------------------------------------
    def _url(self, port: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}"

    @property
    def lmcache_http_url(self) -> str:
        return self._url(self.lmcache_http_port)

    @property
    def vllm_url(self) -> str:
        return self._url(self.vllm_port)

    @property
    def redis_url(self) -> str:
        return f"tcp://{self.store_host}:{self.redis_port}"

    @property
    def coordinator_base_url(self) -> str:
        """Where scripts/start_coordinator.sh serves (REPRO_COORDINATOR_URL points servers at one)."""
        return f"http://{self.store_host}:{self.coordinator_port}"

    @property
    def lmcache_rpc_url(self) -> str:
        return f"tcp://{self.host}:{self.lmcache_port}"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
