"""Prometheus counters of both servers, scraped around each request."""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests
from prometheus_client.parser import text_string_to_metric_families

LMCACHE_WRITES = "lmcache_mp_l1_write_chunks_total"
LMCACHE_READS = "lmcache_mp_l1_read_chunks_total"
# Read locks released on chunks nobody read (a lookup's locks on what vLLM already held); with
# the pristine LMCache (REPRO_PATCHES=upstream) these count as reads, patch 0008 parts them.
LMCACHE_RELEASED = "lmcache_mp_l1_read_released_chunks_total"
# LMCache's L2 tier and L1 eviction (chunks).
LMCACHE_L2_STORED = "lmcache_mp_l2_store_completed_objects_chunks_total"
LMCACHE_L2_LOADED = "lmcache_mp_l2_prefetch_load_completed_chunks_total"
LMCACHE_L1_EVICTED = "lmcache_mp_l1_evicted_chunks_total"
# Lookups the server received (a connector that holds the server for down asks none).
LMCACHE_LOOKUPS = "lmcache_mp_lookups_requests_total"
VLLM_EXTERNAL_HITS = "vllm:external_prefix_cache_hits_total"
VLLM_EXTERNAL_QUERIES = "vllm:external_prefix_cache_queries_total"
VLLM_LOCAL_HITS = "vllm:prefix_cache_hits_total"
VLLM_LOCAL_QUERIES = "vllm:prefix_cache_queries_total"
# Seconds, summed over requests (histogram sums): with one request at a time, the delta around
# a request is that request's own time as vLLM saw it.
VLLM_SERVER_TTFT = "vllm:time_to_first_token_seconds_sum"
VLLM_QUEUE = "vllm:request_queue_time_seconds_sum"
VLLM_PREFILL = "vllm:request_prefill_time_seconds_sum"
VLLM_DECODE = "vllm:request_decode_time_seconds_sum"
# The connector's own clock: from its first lookup submit until LMCache's answer is ready.
VLLM_LOOKUP = "vllm:lmcache_mp_lookup_duration_seconds_sum"


def parse(text: str) -> dict[str, float]:
    """Sum every sample by name over its labels."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    return totals


def by_label(text: str, name: str, label: str) -> dict[str, float]:
    """One metric's samples summed per value of ``label`` (e.g. vLLM's prompt tokens by source)."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and label in sample.labels:
                key = sample.labels[label]
                totals[key] = totals.get(key, 0.0) + float(sample.value)
    return totals


def scrape(client: requests.Session, base_url: str) -> dict[str, float]:
    response = client.get(f"{base_url}/metrics", timeout=10)
    response.raise_for_status()
    return parse(response.text)


@dataclass(frozen=True)
class Counters:
    lmcache: dict[str, float]
    vllm: dict[str, float]

    def delta(self, before: Counters, name: str) -> int:
        return round(self.change(before, name))

    def change(self, before: Counters, name: str) -> float:
        side = self.lmcache if name.startswith("lmcache") else self.vllm
        old = before.lmcache if name.startswith("lmcache") else before.vllm
        return side.get(name, 0.0) - old.get(name, 0.0)


TRACKED = (
    LMCACHE_WRITES,
    LMCACHE_READS,
    LMCACHE_RELEASED,
    LMCACHE_LOOKUPS,
    LMCACHE_L2_STORED,
    LMCACHE_L2_LOADED,
    LMCACHE_L1_EVICTED,
    VLLM_EXTERNAL_HITS,
    VLLM_EXTERNAL_QUERIES,
    VLLM_LOCAL_HITS,
    VLLM_LOCAL_QUERIES,
    VLLM_SERVER_TTFT,
    VLLM_QUEUE,
    VLLM_PREFILL,
    VLLM_DECODE,
    VLLM_LOOKUP,
)


def snapshot(client: requests.Session, lmcache_url: str | None, vllm_url: str) -> Counters:
    """The tracked counters of both servers (process gauges change on every scrape).
    Without an LMCache URL (vLLM runs without the connector) its side is empty."""

    def tracked(values: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in values.items() if k in TRACKED}

    lmcache = tracked(scrape(client, lmcache_url)) if lmcache_url else {}
    return Counters(lmcache, tracked(scrape(client, vllm_url)))


def settled(client: requests.Session, lmcache_url: str | None, vllm_url: str, timeout: float = 5.0) -> Counters:
    """Counters once two scrapes 0.3 s apart agree (stores finish after the response)."""
    deadline = time.monotonic() + timeout
    last = snapshot(client, lmcache_url, vllm_url)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        current = snapshot(client, lmcache_url, vllm_url)
        if current == last:
            return current
        last = current
    return last
