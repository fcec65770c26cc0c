"""The LMCache MP server's own HTTP API: status, L1 clear, L2 adapters."""

from __future__ import annotations

from typing import Any

import requests


def status(client: requests.Session, url: str) -> dict[str, Any]:
    response = client.get(f"{url}/status", timeout=10)
    response.raise_for_status()
    return dict(response.json())


def clear_l1(client: requests.Session, url: str) -> None:
    """Drop every object of L1 (the L2 tier keeps its copies)."""
    response = client.post(f"{url}/cache/clear", json={"tier": "l1", "force": True}, timeout=30)
    response.raise_for_status()


def l1(state: dict[str, Any]) -> dict[str, Any]:
    """The L1 manager's block of a /status answer (objects, bytes used and total)."""
    return dict(state.get("storage_manager", {}).get("l1_manager", {}))


def l2_adapters(state: dict[str, Any]) -> list[dict[str, Any]]:
    return list(state.get("storage_manager", {}).get("l2_adapters", []))


def l2_pending(state: dict[str, Any]) -> int:
    """Keys still waiting to be written to L2."""
    controller = state.get("storage_manager", {}).get("store_controller", {})
    return int(controller.get("pending_keys_count", 0)) + int(controller.get("in_flight_task_count", 0))


def eviction_controller(state: dict[str, Any]) -> dict[str, Any]:
    """The L1 eviction controller's block: policy, trigger watermark, eviction ratio."""
    return dict(state.get("storage_manager", {}).get("l1_eviction_controller", {}))


def registered_kv_caches(state: dict[str, Any]) -> int:
    """How many engine workers have registered their KV caches (a restarted server has none
    until each connector's heartbeat finds it back and re-registers: until then it stores
    nothing and its lookups find nothing for them)."""
    return len(state.get("registered_gpu_ids", [])) + len(state.get("registered_non_cuda_instance_ids", []))
