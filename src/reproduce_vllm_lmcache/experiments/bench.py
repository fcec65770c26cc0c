"""The sweep of scripts/bench.sh: cold vs warm TTFT per prompt length and chunk size, the
machine's floor for each point, and where a warm request's time goes.

``measure`` runs against the servers that are up (one chunk size, or no connector at all);
``report`` merges a run folder's ``points-*.json`` into ``bench.json`` and plots it.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

from reproduce_vllm_lmcache.experiments import client, floor
from reproduce_vllm_lmcache.report import stats
from reproduce_vllm_lmcache.servers.settings import Settings

RETRIEVED = re.compile(r"Retrieved (\d+) tokens in ([\d.]+) seconds")
PREFETCHED = re.compile(r"Prefetch request completed .* in ([\d.]+) ms")
STORED = re.compile(r"Stored (\d+) tokens in ([\d.]+) seconds")


def lmcache_log_times(text: str) -> dict[str, float]:
    """Seconds LMCache spent on the requests whose log lines are in ``text``."""
    return {
        "lmcache_retrieve_s": round(sum(float(m.group(2)) for m in RETRIEVED.finditer(text)), 4),
        "lmcache_prefetch_s": round(sum(float(m.group(1)) for m in PREFETCHED.finditer(text)) / 1000, 4),
        "lmcache_store_s": round(sum(float(m.group(2)) for m in STORED.finditer(text)), 4),
    }


class LogTail:
    """What a log file gained since the last call (empty when there is no log)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.offset = path.stat().st_size if path and path.exists() else 0

    def new_text(self) -> str:
        if not self.path or not self.path.exists():
            return ""
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        return data.decode(errors="replace")


def machine(session: client.Session, settings: Settings, repeats: int = 5) -> floor.Machine:
    """Measure the floor's ingredients on the running servers."""
    rtts = []
    for _ in range(20):
        started = time.perf_counter()
        session.client.get(f"{settings.vllm_url}/health").raise_for_status()
        rtts.append(time.perf_counter() - started)
    one_token = []
    for i in range(repeats):
        ids = session.tokenize(f" {i}")[:1]
        result = client.complete(session.client, settings, session.model, ids, 120)
        one_token.append(float(result["ttft"]))  # type: ignore[arg-type]
    return floor.Machine(
        kv_bytes_per_token=floor.kv_bytes_per_token(floor.model_config(settings.model), settings.dtype),
        copy_bytes_per_s=round(floor.copy_bandwidth()),
        one_token_ttft_s=round(statistics.median(one_token), 4),
        http_rtt_s=round(statistics.median(rtts), 5),
    )


def point(
    rounds: list[client.Round],
    logs: list[dict[str, float]],
    length: int,
    chunk_size: int,
    block_size: int,
    cache: str = "lmcache",
) -> dict[str, Any]:
    """Medians (and samples) of one prompt length's repeats."""
    cold = [r for r in rounds if r.name == "cold"]
    warm = [r for r in rounds if r.name == "warm"]
    out: dict[str, Any] = {
        "prompt_tokens": length,
        "cache": cache,
        "chunk_size": chunk_size,
        "block_size": block_size,
        "repeats": len(cold),
        "cold_ttft_s": stats.summary([r.ttft_s for r in cold])["median"],
        "cold_ttft": stats.summary([r.ttft_s for r in cold]),
        "cold_ttft_samples": [r.ttft_s for r in cold],
        "stored_chunks": min(r.lmcache_l1_write_chunks for r in cold),
    }
    if warm:

        def med(values: list[float]) -> float:
            return round(statistics.median(values), 4)

        out.update(
            warm_ttft_s=med([r.ttft_s for r in warm]),
            warm_ttft=stats.summary([r.ttft_s for r in warm]),
            warm_ttft_samples=[r.ttft_s for r in warm],
            warm_hit_tokens=min(r.vllm_local_hit_tokens if cache == "apc" else r.vllm_external_hit_tokens for r in warm),
            warm_read_chunks=min(r.lmcache_l1_read_chunks for r in warm),
            identical=all(c.output_tokens == w.output_tokens for c, w in zip(cold, warm)),
            breakdown={
                "client_ttft_s": med([r.ttft_s for r in warm]),
                "vllm_server_ttft_s": med([r.vllm_server_ttft_s for r in warm]),
                "vllm_queue_s": med([r.vllm_queue_s for r in warm]),
                "vllm_prefill_s": med([r.vllm_prefill_s for r in warm]),
                "frontend_s": med([r.ttft_s - r.vllm_server_ttft_s for r in warm]),
                **{k: med([log[k] for log in logs]) if logs else 0.0 for k in ("lmcache_prefetch_s", "lmcache_retrieve_s")},
            },
        )
    return out


def measure(settings: Settings, lengths: list[int], repeats: int, lmcache_log: Path | None, timeout: float) -> dict[str, Any]:
    """Every point for the running servers: fresh prompts per repeat, cold then warm."""
    session = client.Session(settings)
    nonce = time.time_ns()
    try:
        session.round("warmup", "warmup", session.prompt(256, seed=f"warmup-{nonce}"), 600)
        found = machine(session, settings)
        points = []
        for length in lengths:
            rounds, logs = [], []
            for r in range(repeats):
                ids = session.prompt(length, seed=f"bench-{nonce}-{length}-{r}")
                rounds.append(session.round("cold", f"p{length}", ids, timeout))
                if settings.connector:
                    tail = LogTail(lmcache_log)
                    rounds.append(session.round("warm", f"p{length}", ids, timeout))
                    logs.append(lmcache_log_times(tail.new_text()))
                elif settings.prefix_caching:
                    rounds.append(session.round("warm", f"p{length}", ids, timeout))
            cache = "lmcache" if settings.connector else "apc" if settings.prefix_caching else "none"
            points.append(point(rounds, logs, length, settings.chunk_size if settings.connector else 0, settings.block_size, cache))
    finally:
        session.close()
    return {"machine": found.as_dict(), "points": points}


def with_floor(p: dict[str, Any], m: floor.Machine) -> dict[str, Any]:
    if "warm_ttft_s" not in p:
        return p
    if stats.cache_of(p) == "apc":  # nothing is copied: the floor models LMCache's load
        return {**p, "speedup": round(p["cold_ttft_s"] / p["warm_ttft_s"], 2)}
    parts = floor.floor(m, p["prompt_tokens"], p["warm_hit_tokens"], p["cold_ttft_s"])
    return {
        **p,
        **parts,
        "speedup": round(p["cold_ttft_s"] / p["warm_ttft_s"], 2),
        "warm_over_floor": round(p["warm_ttft_s"] / parts["floor_s"], 2),
    }


def merge(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All points with their floors; LMCache points get the store overhead against the
    no-connector baseline at the same length, and their warm TTFT beside vLLM's own prefix
    cache's (APC) at the same length, when the sweep has them."""
    points = [with_floor(p, floor.Machine(**part["machine"])) for part in parts for p in part["points"]]
    baseline = {p["prompt_tokens"]: p for p in points if stats.cache_of(p) == "none"}
    apc = {p["prompt_tokens"]: p for p in points if stats.cache_of(p) == "apc" and "warm_ttft_s" in p}
    for p in points:
        if stats.cache_of(p) != "lmcache":
            continue
        base = baseline.get(p["prompt_tokens"])
        if base:
            p["cold_vs_no_connector"] = stats.verdict(base["cold_ttft_samples"], p["cold_ttft_samples"])
        own = apc.get(p["prompt_tokens"])
        if own and "warm_ttft_s" in p:
            p["apc_warm_ttft_s"] = own["warm_ttft_s"]
            p["warm_over_apc"] = round(p["warm_ttft_s"] / own["warm_ttft_s"], 2)
    return points


def table(points: list[dict[str, Any]]) -> str:
    lines = [
        "| tokens | chunk | cold TTFT s | warm TTFT s | speedup | hit tokens | floor s | warm/floor | cold vs plain vLLM | APC warm s | warm/APC |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = {"none": 0, "apc": 1, "lmcache": 2}
    for p in sorted(points, key=lambda p: (order[stats.cache_of(p)], p["chunk_size"], p["prompt_tokens"])):
        if "warm_ttft_s" not in p:
            lines.append(f"| {p['prompt_tokens']} | none | {p['cold_ttft_s']:.3f} | | | | | | | | |")
            continue
        if stats.cache_of(p) == "apc":
            lines.append(
                f"| {p['prompt_tokens']} | APC | {p['cold_ttft_s']:.3f} | {p['warm_ttft_s']:.3f} | {p['speedup']:.1f}x "
                f"| {p['warm_hit_tokens']} | | | | | |"
            )
            continue
        vs = p.get("cold_vs_no_connector")
        overhead = f"{vs['ratio']:.2f} ({vs['verdict']})" if vs else ""
        apc = f"{p['apc_warm_ttft_s']:.3f} | {p['warm_over_apc']:.2f}" if "apc_warm_ttft_s" in p else " | "
        lines.append(
            f"| {p['prompt_tokens']} | {p['chunk_size']} | {p['cold_ttft_s']:.3f} | {p['warm_ttft_s']:.3f} "
            f"| {p['speedup']:.1f}x | {p['warm_hit_tokens']} | {p['floor_s']:.3f} | {p['warm_over_floor']:.1f} "
            f"| {overhead} | {apc} |"
        )
    return "\n".join(lines)


def breakdown_table(points: list[dict[str, Any]]) -> str:
    keys = ("client_ttft_s", "frontend_s", "vllm_queue_s", "vllm_prefill_s", "lmcache_prefetch_s", "lmcache_retrieve_s")
    lines = [
        "| tokens | chunk | tail tokens | " + " | ".join(k.removesuffix("_s") for k in keys) + " | floor tail s |",
        "|---:|---:|---:|" + "---:|" * (len(keys) + 1),
    ]
    for p in sorted(points, key=lambda p: (p["chunk_size"], p["prompt_tokens"])):
        if "breakdown" in p and stats.cache_of(p) == "lmcache":
            b = p["breakdown"]
            cells = " | ".join(f"{b[k]:.3f}" for k in keys)
            lines.append(f"| {p['prompt_tokens']} | {p['chunk_size']} | {p['tail_tokens']} | {cells} | {p['floor_tail_s']:.3f} |")
    return "\n".join(lines)


def report(run_dir: Path) -> tuple[dict[str, Any], Path]:
    """bench.json from the folder's points-*.json (and vLLM ready times)."""
    parts = [json.loads(p.read_text()) for p in sorted(run_dir.glob("points-*.json"))]
    if not parts:
        raise FileNotFoundError(f"no points-*.json in {run_dir}")
    data = {
        "config": parts[0]["config"],
        "configurations": [{k: part[k] for k in ("configuration", "machine", "vllm_ready_s")} for part in parts],
        "points": merge(parts),
    }
    return data, run_dir / "bench.json"
