"""Knob validation and the server command lines built from the knobs."""

import json

import pytest

from reproduce_vllm_lmcache.servers import commands, settings
from reproduce_vllm_lmcache.servers.settings import KnobError, Settings


def test_defaults_resolve() -> None:
    s = Settings.from_env({})
    assert s.host == "127.0.0.1"
    assert s.transfer_mode == "lmcache_driven"
    assert s.prefix_caching is False
    assert s.kv_load_failure_policy == "recompute"
    assert s.prompt_tokens == (640, 3000)
    assert s.dtype == "float32"


@pytest.mark.parametrize(
    "machine,flags,expected",
    [
        ("x86_64", {"avx2"}, "float32"),
        ("x86_64", {"avx2", "avx512f"}, "float32"),
        ("x86_64", {"avx512f", "avx512_bf16"}, "bfloat16"),
        ("aarch64", {"bf16"}, "float32"),
    ],
)
def test_auto_dtype_follows_cpu_features(machine, flags, expected) -> None:
    assert settings.resolve_dtype("auto", machine, flags) == expected


def test_explicit_dtype_wins() -> None:
    assert settings.resolve_dtype("float32", "x86_64", {"avx512_bf16"}) == "float32"


@pytest.mark.parametrize(
    "env,message",
    [
        ({"REPRO_DTYPE": "fp8"}, "REPRO_DTYPE='fp8'"),
        ({"REPRO_TRANSFER_MODE": "rdma"}, "REPRO_TRANSFER_MODE='rdma'"),
        ({"REPRO_L1_SIZE_GB": "-1"}, "REPRO_L1_SIZE_GB=-1.0: must be > 0"),
        ({"REPRO_VLLM_KV_SPACE_GB": "0"}, "REPRO_VLLM_KV_SPACE_GB=0"),
        ({"REPRO_VLLM_PORT": "http"}, "REPRO_VLLM_PORT='http': expected a whole number"),
        ({"REPRO_LMCACHE_PORT": "70000"}, "between 1 and 65535"),
        ({"REPRO_VLLM_PORT": "5555"}, "ports must differ"),
        ({"REPRO_HOST": "0.0.0.0"}, "loopback only"),
        ({"REPRO_PROMPT_TOKENS": "5000"}, "does not fit REPRO_MAX_MODEL_LEN=4096"),
        ({"REPRO_PROMPT_TOKENS": "6x0"}, "expected numbers"),
        ({"REPRO_MODEL": "models/nope"}, "no such model directory"),
        ({"REPRO_PREFIX_CACHING": "yes"}, "REPRO_PREFIX_CACHING='yes'"),
        ({"REPRO_EVICTION_POLICY": "FIFO"}, "REPRO_EVICTION_POLICY='FIFO'"),
        ({"REPRO_BLOCK_SIZE": "16", "REPRO_CHUNK_SIZE": "64"}, "REPRO_BLOCK_SIZE=16: vLLM's CPU attention takes blocks in multiples of 32"),
    ],
)
def test_bad_knobs_are_refused_with_the_knob_named(env, message) -> None:
    with pytest.raises(KnobError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)


def test_hugging_face_ids_are_accepted_as_models() -> None:
    assert Settings.from_env({"REPRO_MODEL": "facebook/opt-125m"}).model == "facebook/opt-125m"


def test_vllm_command_carries_the_connector_config() -> None:
    s = Settings.from_env({"REPRO_TRANSFER_MODE": "engine_driven", "REPRO_KV_LOAD_FAILURE_POLICY": "fail"})
    argv = commands.vllm(s)
    assert argv[0] == "env" and "--no-enable-prefix-caching" in argv and "--enforce-eager" in argv
    assert "VLLM_CPU_OMP_THREADS_BIND=" + s.threads_bind in argv
    kv = json.loads(argv[argv.index("--kv-transfer-config") + 1])
    assert kv["kv_connector"] == "LMCacheMPConnector"
    assert kv["kv_load_failure_policy"] == "fail"
    assert kv["kv_connector_extra_config"] == {
        "lmcache.mp.host": "tcp://127.0.0.1",
        "lmcache.mp.port": 5555,
        "lmcache.mp.mp_transfer_mode": "engine_driven",
        "lmcache.mp.lookup_wait_ms": 20.0,
    }
    assert "--kv-transfer-config" not in commands.vllm(s, connector=False)
    assert "--kv-transfer-config" not in commands.vllm(Settings.from_env({"REPRO_CONNECTOR": "0"}))


def test_lmcache_command_binds_loopback_and_turns_telemetry_off() -> None:
    argv = commands.lmcache(Settings.from_env({"REPRO_CHUNK_SIZE": "128"}))
    assert "LMCACHE_TRACK_USAGE=false" in argv
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--http-host") + 1] == "127.0.0.1"
    assert argv[argv.index("--chunk-size") + 1] == "128"
    assert "LMCACHE_TRACK_USAGE=true" in commands.lmcache(Settings.from_env({"REPRO_LMCACHE_TELEMETRY": "true"}))


def test_threads_bind_all_means_every_core() -> None:
    import sys

    expected = "0-3" if sys.platform == "linux" else "nobind"
    assert settings.threads_bind("all", 4) == expected
    assert settings.threads_bind("0", 4) == "0"


def test_l2_adapter_is_lmcaches_own_resp_or_fs_spec() -> None:
    assert "--l2-adapter" not in commands.lmcache(Settings.from_env({}))
    redis = Settings.from_env({"REPRO_L2": "redis", "REPRO_REDIS_PORT": "6400"})
    argv = commands.lmcache(redis)
    assert json.loads(argv[argv.index("--l2-adapter") + 1]) == {"type": "resp", "host": "127.0.0.1", "port": 6400}
    disk = Settings.from_env({"REPRO_L2": "disk", "REPRO_L2_DISK_DIR": "some/where"})
    spec = json.loads(commands.lmcache(disk)[-1])
    assert spec["type"] == "fs" and spec["base_path"].endswith("some/where") and spec["base_path"].startswith("/")
    with pytest.raises(KnobError, match="REPRO_L2='s3'"):
        Settings.from_env({"REPRO_L2": "s3"})
    with pytest.raises(KnobError, match="ports must differ"):
        Settings.from_env({"REPRO_REDIS_PORT": "8000"})


def test_redis_binds_loopback_on_its_own_port_and_persists_nothing() -> None:
    argv = commands.redis(Settings.from_env({"REPRO_REDIS_PORT": "6401"}))
    assert argv[argv.index("--bind") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == "6401"
    assert argv[argv.index("--save") + 1] == "" and argv[argv.index("--appendonly") + 1] == "no"


def test_extra_args_are_shell_words_appended_to_each_command_line() -> None:
    s = Settings.from_env(
        {"REPRO_VLLM_EXTRA_ARGS": "--max-num-batched-tokens 4096 --served-model-name 'a b'", "REPRO_LMCACHE_EXTRA_ARGS": "--max-workers 2"}
    )
    assert commands.vllm(s)[-4:] == ["--max-num-batched-tokens", "4096", "--served-model-name", "a b"]
    assert commands.lmcache(s)[-2:] == ["--max-workers", "2"]
    assert s.as_dict()["vllm_extra_args"] == ("--max-num-batched-tokens", "4096", "--served-model-name", "a b")
    with pytest.raises(KnobError, match="REPRO_VLLM_EXTRA_ARGS=.*not shell words"):
        Settings.from_env({"REPRO_VLLM_EXTRA_ARGS": "--x 'open"})


def test_fast_layout_forks_the_engine_with_the_worker_inside() -> None:
    argv = commands.vllm(Settings.from_env({"REPRO_VLLM_LAYOUT": "fast"}))
    assert argv[argv.index("--distributed-executor-backend") + 1] == "uni"
    assert "VLLM_ENABLE_V1_MULTIPROCESSING=0" in argv and "VLLM_WORKER_MULTIPROC_METHOD=fork" in argv
    upstream = commands.vllm(Settings.from_env({"REPRO_VLLM_LAYOUT": "upstream"}))
    assert "--distributed-executor-backend" not in upstream
    assert not any(a.startswith(("VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_WORKER_MULTIPROC_METHOD")) for a in upstream)


def test_fast_layout_falls_back_where_it_is_not_verified() -> None:
    from reproduce_vllm_lmcache.servers.settings import vllm_layout

    assert vllm_layout("fast", "linux") == ("fast", "")
    layout, note = vllm_layout("fast", "darwin")
    assert layout == "upstream" and "Linux only" in note
    with pytest.raises(KnobError, match="REPRO_VLLM_LAYOUT='x'"):
        vllm_layout("x", "linux")


def test_preload_server_command_keeps_the_fast_layout_libraries() -> None:
    argv = commands.preload(Settings.from_env({"REPRO_VLLM_LAYOUT": "fast", "REPRO_PRELOAD_VLLM": "0"}), "s.sock")
    assert argv[-5:] == ["-m", "reproduce_vllm_lmcache.servers.preload", "serve", "--socket", "s.sock"]
    with_vllm = commands.preload(Settings.from_env({"REPRO_VLLM_LAYOUT": "fast", "REPRO_PRELOAD_VLLM": "1"}), "s.sock")
    assert with_vllm[-1] == "--with-vllm" and "VLLM_CPU_KVCACHE_SPACE=1" in with_vllm
    assert "TORCHINDUCTOR_COMPILE_THREADS=1" in argv


def test_namespace_guard_stands_down_where_the_patch_keys_by_layout() -> None:
    """With the patch that puts dtype and layout into LMCache's key running, the guard says it is
    not needed (no LMCache server is asked); upstream mode runs without that patch, so there it
    must ask the server (none runs here: the start is refused with the way out)."""
    from reproduce_vllm_lmcache.servers import guards
    from reproduce_vllm_lmcache.servers.settings import ServerDown

    note = guards.check_namespace(Settings.from_env({"REPRO_LMCACHE_HTTP_PORT": "1"}), "clear")
    assert note.startswith("namespace guard not needed") and guards.NAMESPACE_PATCH in note
    with pytest.raises(ServerDown, match="start it with scripts/start_lmcache.sh"):
        guards.check_namespace(Settings.from_env({"REPRO_PATCHES": "upstream", "REPRO_LMCACHE_HTTP_PORT": "1"}), "clear")


def test_vllm_malloc_finds_the_library_or_names_the_package(tmp_path) -> None:
    from reproduce_vllm_lmcache.workspace.system import malloc_library as vllm_malloc

    assert vllm_malloc("auto", "linux", (str(tmp_path),)) == ""  # none installed: glibc's
    (tmp_path / "libjemalloc.so.2").write_bytes(b"")
    assert vllm_malloc("auto", "linux", (str(tmp_path),)) == ""  # auto means tcmalloc only
    assert vllm_malloc("jemalloc", "linux", (str(tmp_path),)) == str(tmp_path / "libjemalloc.so.2")
    with pytest.raises(KnobError, match="apt install libtcmalloc-minimal4"):
        vllm_malloc("tcmalloc", "linux", (str(tmp_path),))
    (tmp_path / "libtcmalloc_minimal.so.4").write_bytes(b"")
    assert vllm_malloc("auto", "linux", (str(tmp_path),)) == str(tmp_path / "libtcmalloc_minimal.so.4")
    assert vllm_malloc("auto", "darwin", (str(tmp_path),)) == vllm_malloc("system", "linux", (str(tmp_path),)) == ""
    with pytest.raises(KnobError, match="REPRO_VLLM_MALLOC='x'"):
        vllm_malloc("x", "linux")


def test_vllm_gets_the_allocator_first_in_ld_preload() -> None:
    s = Settings.from_env({"REPRO_VLLM_LAYOUT": "fast"})
    preload = commands.preload_env(s).get("LD_PRELOAD", "").split(":")
    if s.vllm_malloc:
        assert preload[0] == s.vllm_malloc
    assert any("libgomp" in p for p in preload)
    assert "LD_PRELOAD" not in commands.preload_env(Settings.from_env({"REPRO_VLLM_LAYOUT": "upstream", "REPRO_VLLM_MALLOC": "system"}))
