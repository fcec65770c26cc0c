"""Repeat statistics and the noise verdict used by bench and compare; which cache a bench
point measured (bench, plots)."""

from __future__ import annotations

import statistics
from typing import Any

# Smallest change called real: below it, a 2-core laptop's run-to-run noise decides.
MIN_NOISE = 0.10


def spread(samples: list[float]) -> float:
    """Relative range of the samples, (max - min) / median; 0 for fewer than two."""
    if len(samples) < 2:
        return 0.0
    mid = statistics.median(samples)
    return (max(samples) - min(samples)) / mid if mid > 0 else 0.0


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(samples), 4),
        "min": round(min(samples), 4),
        "max": round(max(samples), 4),
        "spread": round(spread(samples), 4),
    }


def verdict(a: list[float], b: list[float], min_noise: float = MIN_NOISE) -> dict[str, object]:
    """B against A: ratio of medians, and faster/slower only beyond both runs' own spread."""
    ratio = statistics.median(b) / statistics.median(a)
    band = max(min_noise, spread(a), spread(b))
    if ratio < 1 - band:
        word = "faster"
    elif ratio > 1 + band:
        word = "slower"
    else:
        word = "unchanged"
    return {"ratio": round(ratio, 3), "noise_band": round(band, 3), "verdict": word, "repeats": [len(a), len(b)]}


def cache_of(p: dict[str, Any]) -> str:
    """Which cache served a point's warm requests: none (plain vLLM, the cold baseline), apc
    (vLLM's own prefix cache) or lmcache (sweeps recorded before the APC column: by chunk size)."""
    return str(p.get("cache") or ("lmcache" if p["chunk_size"] else "none"))
