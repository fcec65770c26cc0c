"""Pure logic of scripts/nodes.sh's scenario: node specs, the verdict's checks, the knobs that
point a node at the shared store and the coordinator, and the network-namespace helpers."""

from __future__ import annotations

import os

import pytest

from reproduce_vllm_lmcache.experiments import nodes
from reproduce_vllm_lmcache.servers import commands, lmcache_api, netns
from reproduce_vllm_lmcache.servers.settings import KnobError, Settings
from reproduce_vllm_lmcache.workspace import system


def test_node_spec_parses_what_nodes_sh_passes() -> None:
    spec = nodes.NodeSpec.parse("b,repro-1-b,5555,8080,8000")
    assert (spec.name, spec.netns, spec.lmcache_port, spec.vllm_port) == ("b", "repro-1-b", 5555, 8000)
    assert nodes.NodeSpec.parse("b,-,5655,8180,8100").netns == ""
    assert spec.env()["REPRO_LMCACHE_HTTP_PORT"] == "8080"
    with pytest.raises(ValueError, match="NAME,NETNS"):
        nodes.NodeSpec.parse("b,5555")


def _step(name: str, source: str, **over: object) -> dict[str, object]:
    base = {
        "step": name,
        "source": source,
        "hit_tokens": 576,
        "want_hit_tokens": 576,
        "want_chunks": 9,
        "l1_objects_before": 0,
        "l2_loaded_chunks": 9,
        "identical_to_cold": True,
    }
    return {**base, **over}


def test_checks_want_every_chunk_from_the_store_and_the_same_answer() -> None:
    good = {
        "steps": [
            _step("cold", "", hit_tokens=0, want_hit_tokens=0),
            _step("AtoB store", "l2, empty L1"),
            _step("AtoB again", "l1", l2_loaded_chunks=0),
            _step("BtoA store", "l2", l1_objects_before=9),
        ]
    }
    restart = {"steps": [_step("after restart", "l2, empty L1")]}
    assert all(nodes.checks(good, restart).values()) and len(nodes.checks(good, restart)) == 4
    for bad in (
        _step("after restart", "l2, empty L1", l1_objects_before=3),  # L1 not empty: not proven from the store
        _step("after restart", "l2, empty L1", l2_loaded_chunks=4),  # some chunks from elsewhere
        _step("after restart", "l2, empty L1", identical_to_cold=False),
        _step("after restart", "l2, empty L1", hit_tokens=0, want_hit_tokens=0),  # nothing to hit proves nothing
    ):
        assert not all(nodes.checks(good, {"steps": [bad]}).values()), bad
    again_from_l2 = {"steps": [_step("AtoB again", "l1", l2_loaded_chunks=2)]}
    assert not all(nodes.checks(again_from_l2, {"steps": []}).values())


def test_store_and_coordinator_knobs() -> None:
    env = {
        **os.environ,
        "REPRO_L2": "redis",
        "REPRO_COORDINATOR_URL": "http://127.0.0.1:9300",
        "REPRO_LMCACHE_INSTANCE_ID": "node-a",
        "REPRO_L2_PREFETCH_POLICY": "retain",
    }
    argv = commands.lmcache(Settings.from_env(env))
    assert argv[argv.index("--coordinator-url") + 1] == "http://127.0.0.1:9300" and "--coordinator-event-reporting" in argv
    assert argv[argv.index("--instance-id") + 1] == "node-a" and argv[argv.index("--l2-prefetch-policy") + 1] == "retain"
    assert "--coordinator-url" not in commands.lmcache(Settings.from_env({**os.environ, "REPRO_COORDINATOR_URL": ""}))
    with pytest.raises(KnobError, match="REPRO_STORE_HOST"):
        Settings.from_env({**os.environ, "REPRO_STORE_HOST": "10.77.0.1", "REPRO_NETNS": ""})
    inside = Settings.from_env({**env, "REPRO_STORE_HOST": "10.77.0.1", "REPRO_NETNS": "repro-1-a"})
    assert commands.l2_adapter(inside)["host"] == "10.77.0.1" and inside.host == "127.0.0.1"
    assert inside.redis_url == "tcp://10.77.0.1:6390" and commands.coordinator(inside)[-6:-3] == ["--host", "10.77.0.1", "--port"]


def test_netns_helpers_stay_put_without_a_namespace() -> None:
    assert netns.same_as(os.getpid())
    with netns.entered(""):
        assert netns.same_as(os.getpid())
    with pytest.raises(FileNotFoundError, match="nodes.sh makes it"), netns.entered("repro-no-such-namespace"):
        pass


def test_missing_platform_programs_are_named_with_their_install_command(monkeypatch) -> None:
    monkeypatch.setenv("REPRO_REDIS_SERVER", "/nonexistent/redis-server")
    lacking = system.missing()
    assert [p.binary for p in lacking][:1] == ["redis-server"]
    assert system.hint(lacking).startswith("apt install redis-server")
    monkeypatch.setenv("REPRO_SYSTEM_PACKAGES", "off")
    assert "install with: apt install redis-server" in system.ensure()


def test_a_restarted_server_counts_no_registration_until_a_worker_registers() -> None:
    # The fields of LMCache's /status (0.5.6) that list registered KV caches.
    assert lmcache_api.registered_kv_caches({"registered_gpu_ids": [], "registered_non_cuda_instance_ids": []}) == 0
    assert lmcache_api.registered_kv_caches({"registered_gpu_ids": [3562181473706219206]}) == 1
    assert lmcache_api.registered_kv_caches({"registered_non_cuda_instance_ids": ["x"]}) == 1
    assert lmcache_api.registered_kv_caches({}) == 0
