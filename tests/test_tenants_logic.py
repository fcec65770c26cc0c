"""The tenant-isolation verdicts (experiments/tenants.py checks), on hand-made rounds."""

from __future__ import annotations

from typing import Any

from reproduce_vllm_lmcache.experiments import tenants


def rnd(local: int = 0, external: int = 0, l2: int = 0, found: dict[str, float] | None = None, out: str = "x") -> dict[str, Any]:
    return {
        "vllm_local_hit_tokens": local,
        "vllm_external_hit_tokens": external,
        "lmcache_l2_loaded_chunks": l2,
        "lmcache_lookup_hits_by_salt": found or {},
        "output_tokens": [out],
    }


ISOLATED = [
    rnd(),
    rnd(external=960, found={"tenant-a": 960}),
    rnd(found={"tenant-a": 0.0}),
    rnd(),
    rnd(external=960, found={"": 960}),
]


def test_isolated_rounds_pass() -> None:
    assert all(tenants.checks(ISOLATED, "local", lmcache=True).values())


def test_apc_rounds_need_no_lmcache_counters() -> None:
    rounds = [rnd(), rnd(local=960), rnd(), rnd(), rnd(local=960)]
    assert all(tenants.checks(rounds, "local", lmcache=False).values())


def test_a_hit_across_salts_fails() -> None:
    leaked = [*ISOLATED]
    leaked[2] = rnd(external=960, found={"tenant-a": 960})  # salt B served tenant A's KV
    found = tenants.checks(leaked, "local", lmcache=True)
    assert not found["salt B: no hit"] and not found["salt B: LMCache found nothing"]


def test_lmcache_finding_another_salts_entry_fails_even_without_vllm_hit() -> None:
    leaked = [*ISOLATED]
    leaked[3] = rnd(found={"tenant-a": 960})
    found = tenants.checks(leaked, "local", lmcache=True)
    assert found["no salt: no hit"] and not found["no salt: LMCache found nothing"]


def test_hit_under_the_wrong_label_fails() -> None:
    wrong = [*ISOLATED]
    wrong[1] = rnd(external=960, found={"tenant-a": 960, "": 960})
    assert not tenants.checks(wrong, "local", lmcache=True)["salt A again: LMCache found it under its own salt only"]


def test_l2_path_needs_the_load_and_identical_answers() -> None:
    assert not tenants.checks(ISOLATED, "l2", lmcache=True)["salt A again: served from L2"]
    from_l2 = [*ISOLATED]
    from_l2[1] = rnd(external=960, l2=15, found={"tenant-a": 960})
    assert all(tenants.checks(from_l2, "l2", lmcache=True).values())
    different = [*from_l2]
    different[4] = rnd(external=960, found={"": 960}, out="y")
    assert not tenants.checks(different, "l2", lmcache=True)["every answer token-identical"]
