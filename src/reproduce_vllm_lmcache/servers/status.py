"""``repro status``: what is cached, hit rates and the last requests, on one screen, from both
servers' own HTTP endpoints (LMCache /status and /metrics, vLLM /metrics)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from reproduce_vllm_lmcache.servers import http_client, lmcache_api, metrics
from reproduce_vllm_lmcache.servers.settings import Settings

# LMCache counters shown (Prometheus names; absent until the event first happens).
LMCACHE_COUNTERS = {
    "lookups": "lmcache_mp_lookups_requests_total",
    "lookup tokens": "lmcache_mp_lookup_requested_tokens_total",
    "lookup hit tokens": "lmcache_mp_lookup_hit_tokens_total",
    "L1 hit keys": "lmcache_mp_lookup_hit_l1_keys_total",
    "L2 hit keys": "lmcache_mp_lookup_hit_l2_keys_total",
    "L1 chunks written": metrics.LMCACHE_WRITES,
    "L1 chunks read": metrics.LMCACHE_READS,
    "L1 chunks evicted": metrics.LMCACHE_L1_EVICTED,
    "L2 chunks stored": metrics.LMCACHE_L2_STORED,
    "L2 chunks loaded": metrics.LMCACHE_L2_LOADED,
}
VLLM_SOURCES = "vllm:prompt_tokens_by_source_total"
VLLM_REQUESTS = "vllm:request_success_total"


def _get(client: requests.Session, url: str) -> requests.Response | None:
    try:
        response = client.get(url, timeout=5)
        response.raise_for_status()
        return response
    except requests.RequestException:
        return None


def gather(settings: Settings, vllm_ports: list[int], latest: Path) -> dict[str, Any]:
    """A snapshot of both servers (and the last recorded rounds); servers that do not answer
    are marked down."""
    snap: dict[str, Any] = {"lmcache": {"url": settings.lmcache_http_url, "up": False}, "vllm": []}
    with http_client.session() as client:
        state = _get(client, f"{settings.lmcache_http_url}/status")
        scraped = _get(client, f"{settings.lmcache_http_url}/metrics")
        if state is not None and scraped is not None:
            values = metrics.parse(scraped.text)
            body = state.json()
            snap["lmcache"].update(
                up=True,
                chunk_size=body.get("chunk_size"),
                l1=lmcache_api.l1(body),
                eviction=lmcache_api.eviction_controller(body),
                l2_adapters=lmcache_api.l2_adapters(body),
                l2_usage_bytes=values.get("lmcache_mp_l2_usage_bytes"),
                counters={label: values.get(name, 0.0) for label, name in LMCACHE_COUNTERS.items()},
            )
        for port in dict.fromkeys(vllm_ports):
            url = f"http://{settings.host}:{port}"
            scraped = _get(client, f"{url}/metrics")
            entry: dict[str, Any] = {"url": url, "up": scraped is not None}
            if scraped is not None:
                values = metrics.parse(scraped.text)
                entry.update(
                    requests=values.get(VLLM_REQUESTS, 0.0),
                    prompt_tokens_by_source=metrics.by_label(scraped.text, VLLM_SOURCES, "source"),
                    external_hits=values.get(metrics.VLLM_EXTERNAL_HITS, 0.0),
                    external_queries=values.get(metrics.VLLM_EXTERNAL_QUERIES, 0.0),
                )
            snap["vllm"].append(entry)
    snap["last_rounds"] = last_rounds(latest)
    return snap


def last_rounds(latest: Path, count: int = 6) -> dict[str, Any]:
    """The last rounds the client recorded (results/latest.json), with their hits."""
    if not latest.exists():
        return {"file": str(latest), "rounds": []}
    data = json.loads(latest.read_text())
    keep = ("prompt", "name", "prompt_tokens", "vllm_external_hit_tokens", "lmcache_l1_read_chunks", "ttft_s")
    return {"file": str(latest), "rounds": [{k: r.get(k) for k in keep} for r in data.get("rounds", [])[-count:]]}


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 1e6:.1f} MB"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "n/a"


def verdict(vllm: list[dict[str, Any]]) -> str:
    """The one-line answer: how many prompt tokens were not computed, and from which cache."""
    if not any(entry.get("up") for entry in vllm):
        return "no vLLM server answers: start one (scripts/start_vllm.sh or scripts/run.sh)"
    by_source: dict[str, float] = {}
    for entry in vllm:
        for source, value in (entry.get("prompt_tokens_by_source") or {}).items():
            by_source[source] = by_source.get(source, 0.0) + value
    total = sum(by_source.values())
    external, local = by_source.get("external_kv_transfer", 0.0), by_source.get("local_cache_hit", 0.0)
    if not total:
        return "no prompt served yet"
    if not external and not local:
        return f"the cache has not helped yet: all {total:.0f} prompt tokens were computed"
    return (
        f"the cache helped: {_pct(external + local, total)} of {total:.0f} prompt tokens were not computed "
        f"({external:.0f} from LMCache, {local:.0f} from vLLM's own prefix cache)"
    )


def render(snap: dict[str, Any]) -> str:
    lines = []
    lm = snap["lmcache"]
    if lm["up"]:
        l1 = lm["l1"]
        lines.append(f"LMCache {lm['url']}  chunk {lm['chunk_size']} tokens")
        lines.append(
            f"  L1: {l1.get('total_object_count', 0)} chunks, {_mb(l1.get('memory_used_bytes'))} of "
            f"{_mb(l1.get('memory_total_bytes'))} ({100 * float(l1.get('memory_usage_ratio', 0.0)):.1f} %), "
            f"eviction {lm['eviction'].get('eviction_policy', '?')} at {lm['eviction'].get('trigger_watermark', '?')}"
        )
        adapters = ", ".join(f"{a.get('type')} ({'healthy' if a.get('is_healthy') else 'UNHEALTHY'})" for a in lm["l2_adapters"])
        lines.append(f"  L2: {adapters or 'none'}" + (f", {_mb(lm['l2_usage_bytes'])} used" if lm["l2_usage_bytes"] else ""))
        c = lm["counters"]
        lines.append(
            f"  lookups: {c['lookups']:.0f}, {c['lookup hit tokens']:.0f} of {c['lookup tokens']:.0f} tokens hit "
            f"({_pct(c['lookup hit tokens'], c['lookup tokens'])}); hit keys L1 {c['L1 hit keys']:.0f}, L2 {c['L2 hit keys']:.0f}"
        )
        lines.append(
            f"  chunks: L1 written {c['L1 chunks written']:.0f}, read {c['L1 chunks read']:.0f}, evicted {c['L1 chunks evicted']:.0f}; "
            f"L2 stored {c['L2 chunks stored']:.0f}, loaded {c['L2 chunks loaded']:.0f}"
        )
    else:
        lines.append(f"LMCache {lm['url']}: not answering")
    for entry in snap["vllm"]:
        if not entry["up"]:
            lines.append(f"vLLM {entry['url']}: not answering")
            continue
        src = entry["prompt_tokens_by_source"]
        total = sum(src.values())
        lines.append(f"vLLM {entry['url']}  {entry['requests']:.0f} requests, {total:.0f} prompt tokens")
        lines.append(
            f"  computed {src.get('local_compute', 0):.0f}, from LMCache {src.get('external_kv_transfer', 0):.0f}, "
            f"from its own prefix cache {src.get('local_cache_hit', 0):.0f}; LMCache hit rate "
            f"{_pct(entry['external_hits'], entry['external_queries'])} of queried tokens"
        )
    rounds = snap["last_rounds"]["rounds"]
    if rounds:
        lines.append(f"last rounds recorded by the client ({snap['last_rounds']['file']}):")
        for r in rounds:
            lines.append(
                f"  {r['prompt']} {r['name']}: {r['prompt_tokens']} prompt tokens, {r['vllm_external_hit_tokens']} hit, "
                f"{r['lmcache_l1_read_chunks']} chunks read, TTFT {r['ttft_s']:.3f} s"
            )
    lines.append("=> " + verdict(snap["vllm"]))
    return "\n".join(lines)
