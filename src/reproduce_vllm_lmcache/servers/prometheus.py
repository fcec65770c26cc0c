"""Prometheus next to the servers (scripts/soak.sh, scripts/observe.sh): its config, which scrapes
both servers' /metrics, the queries the soak plots and the docs list, range queries over its HTTP
API, and what /metrics does not expose: the resident memory of every process of a server's
process group (vLLM's engine, LMCache's workers) and the /dev/shm segments they map."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import psutil
import requests

from reproduce_vllm_lmcache.servers import processes
from reproduce_vllm_lmcache.workspace import system

# name -> PromQL. Rates over 1 minute; hit rates are token ratios; the counters are raw (vLLM's
# never reset during a soak, LMCache's start again from 0 when its server restarts).
QUERIES: dict[str, str] = {
    "vllm_hit_rate": "sum(rate(vllm:external_prefix_cache_hits_total[1m])) / sum(rate(vllm:external_prefix_cache_queries_total[1m]))",
    "lmcache_hit_rate": "sum(rate(lmcache_mp_lookup_hit_tokens_total[1m])) / sum(rate(lmcache_mp_lookup_requested_tokens_total[1m]))",
    "ttft_p50_s": "histogram_quantile(0.5, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[1m])))",
    "ttft_p90_s": "histogram_quantile(0.9, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[1m])))",
    "ttft_p99_s": "histogram_quantile(0.99, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[1m])))",
    "requests_done_per_s": "sum(rate(vllm:request_success_total[1m]))",
    "requests_running": "sum(vllm:num_requests_running)",
    "requests_waiting": "sum(vllm:num_requests_waiting)",
    "l1_used_bytes": "sum(lmcache_mp_l1_memory_usage_bytes)",
    "l1_usage_ratio": "max(lmcache_mp_l1_usage_ratio)",
    "l1_evicted_chunks_per_s": "sum(rate(lmcache_mp_l1_evicted_chunks_total[1m]))",
    "l1_written_chunks_per_s": "sum(rate(lmcache_mp_l1_write_chunks_total[1m]))",
    "rss_bytes": "sum by (job) (process_resident_memory_bytes)",
    "up": "sum by (job) (up)",
    "vllm_external_hit_tokens": "sum(vllm:external_prefix_cache_hits_total)",
    "vllm_external_query_tokens": "sum(vllm:external_prefix_cache_queries_total)",
    "vllm_requests_done": "sum(vllm:request_success_total)",
    "lmcache_hit_tokens": "sum(lmcache_mp_lookup_hit_tokens_total)",
    "lmcache_requested_tokens": "sum(lmcache_mp_lookup_requested_tokens_total)",
}


def config_text(targets: dict[str, str], scrape_s: float) -> str:
    """prometheus.yml: one job per server (job name -> host:port of its /metrics)."""
    lines = ["global:", f"  scrape_interval: {scrape_s:g}s", f"  evaluation_interval: {scrape_s:g}s", "scrape_configs:"]
    for job, target in targets.items():
        lines += [f"  - job_name: {job}", "    metrics_path: /metrics", "    static_configs:", f"      - targets: ['{target}']"]
    return "\n".join(lines) + "\n"


def argv(binary: str, config_file: Path, data_dir: Path, host: str, port: int) -> list[str]:
    """Prometheus on loopback, its data in data_dir (kept one day, never the system's folder)."""
    return [
        binary,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address={host}:{port}",
        "--storage.tsdb.retention.time=1d",
        "--log.level=warn",
    ]


def find_binary(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(
            f"REPRO_PROMETHEUS_BIN={name}: no Prometheus binary found; install it (Debian/Ubuntu: apt install prometheus; "
            "macOS: brew install prometheus) or point REPRO_PROMETHEUS_BIN at one"
        )
    return found


def query_range(client: requests.Session, url: str, query: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    """[{"labels": {...}, "values": [[t, v], ...]}] of one PromQL query (NaN points dropped)."""
    response = client.get(f"{url}/api/v1/query_range", params={"query": query, "start": start, "end": end, "step": step}, timeout=60)
    response.raise_for_status()
    body = response.json()
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus query {query!r}: {body}")
    out = []
    for series in body["data"]["result"]:
        values = [[float(t), float(v)] for t, v in series["values"] if v not in ("NaN", "+Inf", "-Inf")]
        out.append({"labels": series["metric"], "values": values})
    return out


def collect(client: requests.Session, url: str, start: float, end: float, step: float) -> dict[str, Any]:
    """Every query of QUERIES over [start, end]."""
    return {name: {"query": q, "series": query_range(client, url, q, start, end, step)} for name, q in QUERIES.items()}


def rss_split(pid: int) -> dict[str, int]:
    """Linux: the resident memory split into private (RssAnon), file-backed and shared-memory
    pages (RssShmem: touched pages of /dev/shm segments, e.g. vLLM's KV cache, which count in
    RSS the first time they are touched). {} elsewhere."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "RssShmem"):
            found[f"{key[3:].lower()}_bytes"] = int(value.split()[0]) * 1024
    return found


def anon_split(pid: int) -> dict[str, Any]:
    """Linux: where a process's private memory sits (/proc/PID/smaps): the brk heap (glibc's
    main malloc arena), anonymous mmaps (other arenas, large mallocs, torch's and oneDNN's
    buffers), the number of anonymous mappings holding pages, and the malloc the process has
    mapped (tcmalloc, jemalloc, else glibc). Tells an allocator that keeps what it freed (more
    and fuller arenas) from a leak in one place. {} elsewhere."""
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return {}
    heap = mmap = regions = 0
    name, malloc = "", "glibc"
    for line in text.splitlines():
        first = line.split(maxsplit=6)
        if first and "-" in first[0] and not first[0].endswith(":"):  # a mapping's header line
            name = first[5] if len(first) > 5 else ""
            for lib in system.MALLOCS:
                malloc = lib if f"lib{lib}" in name else malloc
        elif first and first[0] == "Anonymous:":
            kb = int(first[1])
            if name == "[heap]":
                heap += kb
            elif not name and kb:
                mmap += kb
                regions += 1
    return {"anon_heap_bytes": heap * 1024, "anon_mmap_bytes": mmap * 1024, "anon_regions": regions, "malloc": malloc}


def sample(leaders: dict[int, str]) -> dict[str, Any]:
    """One sample: RSS of every process of each server's group (leader pid -> role), and the
    /dev/shm segments they map (plus /dev/shm's total use, which other programs share)."""
    found = []
    for leader, role in leaders.items():
        for pid in processes.group(leader):
            try:
                proc = psutil.Process(pid)
                name = proc.name()
                rss = proc.memory_info().rss
            except psutil.Error:
                continue
            found.append(
                {
                    "role": role,
                    "leader": leader,
                    "pid": proc.pid,
                    "name": name,
                    "rss_bytes": rss,
                    **rss_split(proc.pid),
                    **anon_split(proc.pid),
                }
            )
    segments = processes.shm_mapped(p["pid"] for p in found)
    usage = shutil.disk_usage("/dev/shm") if os.path.isdir("/dev/shm") else None
    return {
        "t": time.time(),
        "processes": found,
        "shm_mapped_bytes": sum(segments.values()),
        "shm_mapped_files": sorted(segments),
        "dev_shm_used_bytes": usage.used if usage else None,
    }


def read_leaders(path: Path) -> dict[int, str]:
    """The pids file the soak script keeps: one "ROLE PID" per line (a restarted server adds one)."""
    leaders: dict[int, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            role, _, pid = line.strip().partition(" ")
            if pid.isdigit():
                leaders[int(pid)] = role
    return leaders
