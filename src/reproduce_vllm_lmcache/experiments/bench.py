"""The sweep of scripts/bench.sh: cold vs warm TTFT per prompt length and chunk size, the
machine's floor for each point, and where a warm request's time goes.

``measure`` (``repro bench``) runs against the servers that are up (one chunk size, or no
connector at all); report/bench.py merges a run folder's ``points-*.json`` into ``bench.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.experiments import client
from reproduce_vllm_lmcache.report import floor, results, stats
from reproduce_vllm_lmcache.servers.settings import KnobError, Settings

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


def main(args: argparse.Namespace) -> int:
    """One configuration of the sweep, against the running servers: points-<configuration>.json."""
    from reproduce_vllm_lmcache.servers.settings import Settings

    settings = Settings.from_env()
    k = knobs.Bench.from_env()
    lengths, repeats = list(k.prompt_tokens), k.repeats
    too_long = [n for n in lengths if n + settings.max_tokens > settings.max_model_len]
    if too_long:
        raise KnobError(f"REPRO_BENCH_PROMPT_TOKENS {too_long} do not fit REPRO_MAX_MODEL_LEN={settings.max_model_len}")
    print(f"bench {args.configuration}: prompts {lengths} tokens, {repeats} repeats, chunk size {settings.chunk_size}")
    found = measure(settings, lengths, repeats, args.lmcache_log, knobs.Requests.from_env().timeout_s)
    found.update(
        configuration=args.configuration,
        vllm_ready_s=args.vllm_ready_s,
        config={"knobs": knobs.resolved(), **settings.as_dict(), **results.environment()},
    )
    path = args.run_dir / f"points-{args.configuration}.json"
    path.write_text(results.relative(json.dumps(found, indent=2)) + "\n")
    print(f"recorded {path}")
    return 0
