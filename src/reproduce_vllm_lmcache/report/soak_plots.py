"""PNG plots of a soak run (scripts/soak.sh), from what its run folder holds: the bench requests,
the Prometheus series, the sampler's RSS and /dev/shm, the cache simulator's sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _minutes(t: float, origin: float) -> float:
    return (t - origin) / 60


def _series(series: dict[str, Any], name: str) -> list[tuple[dict[str, str], list[list[float]]]]:
    return [(s["labels"], s["values"]) for s in series.get(name, {}).get("series", [])]


def timeline(
    rows: list[dict[str, Any]],
    series: dict[str, Any],
    samples: list[dict[str, Any]],
    restart: dict[str, float] | None,
    origin: float,
    out: Path,
) -> Path:
    """Five panels over the run: requests, hit rate, TTFT percentiles, RSS, /dev/shm and L1."""
    fig, axes = plt.subplots(5, 1, figsize=(10, 15), sharex=True)
    req, hit, ttft, rss, mem = axes
    for workload in sorted({r["workload"] for r in rows}):
        mine = [r for r in rows if r["workload"] == workload]
        done = sorted(r["finish"] for r in mine if r["ok"])
        failed = sorted(r["finish"] for r in mine if not r["ok"])
        req.step([_minutes(t, origin) for t in done], range(1, len(done) + 1), where="post", label=f"{workload}: done")
        if failed:
            req.step(
                [_minutes(t, origin) for t in failed], range(1, len(failed) + 1), where="post", linestyle="--", label=f"{workload}: failed"
            )
    req.set_ylabel("requests (cumulative)")
    for name, label in (("vllm_hit_rate", "vLLM external hit rate"), ("lmcache_hit_rate", "LMCache lookup hit rate")):
        for _, values in _series(series, name):
            hit.plot([_minutes(t, origin) for t, _ in values], [v for _, v in values], label=label)
    hit.set_ylabel("hit rate (tokens, 1 min)")
    hit.set_ylim(0, 1.05)
    for q in ("p50", "p90", "p99"):
        for _, values in _series(series, f"ttft_{q}_s"):
            ttft.plot([_minutes(t, origin) for t, _ in values], [v for _, v in values], label=f"TTFT {q} (vLLM histogram)")
    ttft.set_ylabel("TTFT s (1 min)")
    per_process: dict[str, list[tuple[float, float, float | None]]] = {}
    for s in samples:
        for p in s["processes"]:
            anon = p["anon_bytes"] / 1e6 if "anon_bytes" in p else None
            per_process.setdefault(f"{p['role']} {p['name']} ({p['pid']})", []).append((s["t"], p["rss_bytes"] / 1e6, anon))
    for name, points in per_process.items():
        line = rss.plot([_minutes(t, origin) for t, _, _ in points], [v for _, v, _ in points], label=f"{name} RSS")[0]
        if all(a is not None for _, _, a in points):
            rss.plot(
                [_minutes(t, origin) for t, _, _ in points],
                [a for _, _, a in points],
                linestyle="--",
                color=line.get_color(),
                label=f"{name} private (RssAnon)",
            )
    for labels, values in _series(series, "rss_bytes"):
        rss.plot(
            [_minutes(t, origin) for t, _ in values], [v / 1e6 for _, v in values], linestyle=":", label=f"/metrics: {labels.get('job')}"
        )
    rss.set_ylabel("RSS MB")
    mem.plot(
        [_minutes(s["t"], origin) for s in samples], [s["shm_mapped_bytes"] / 1e6 for s in samples], label="/dev/shm mapped by the servers"
    )
    for _, values in _series(series, "l1_used_bytes"):
        mem.plot([_minutes(t, origin) for t, _ in values], [v / 1e6 for _, v in values], label="LMCache L1 used (/metrics)")
    mem.set_ylabel("MB")
    mem.set_xlabel("minutes since the load started")
    for ax in axes:
        if restart:
            ax.axvspan(_minutes(restart["killed_at"], origin), _minutes(restart["window_end"], origin), color="red", alpha=0.12)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    axes[0].set_title("Soak: LMCache server killed and restarted in the red window")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def simulator(curve: list[dict[str, float]], observed: float | None, l1_gib: float, out: Path) -> Path:
    """The cache simulator's hit rate vs capacity (LRU replay of the soak's lookups) and the
    hit rate the soak observed, at the L1 size it ran with."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot([c["capacity_gib"] for c in curve], [c["hit_rate"] for c in curve], marker="o", label="simulator (LRU, lookup-hash logs)")
    ax.axvspan(0.65 * l1_gib, l1_gib, color="grey", alpha=0.15, label="effective L1 (watermark 0.8, ratio 0.2)")
    if observed is not None:
        ax.plot([l1_gib], [observed], marker="*", markersize=14, color="red", linestyle="none", label=f"observed {observed:.2f}")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("cache capacity (GiB)")
    ax.set_ylabel("token hit rate")
    ax.set_title("Hit rate vs capacity: simulated, and the soak's")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
