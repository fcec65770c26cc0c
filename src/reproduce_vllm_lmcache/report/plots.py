"""PNG plots of a bench sweep (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from reproduce_vllm_lmcache.report import stats  # noqa: E402


def _series(points: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Points by what served them: "no LMCache", "vLLM APC", "chunk N" (LMCache)."""
    series: dict[str, list[dict[str, Any]]] = {}
    for p in sorted(points, key=lambda p: p["prompt_tokens"]):
        name = {"none": "no LMCache", "apc": "vLLM APC"}.get(stats.cache_of(p), f"chunk {p['chunk_size']}")
        series.setdefault(name, []).append(p)
    return series


def ttft(points: list[dict[str, Any]], out: Path) -> Path:
    """Cold and warm TTFT (median, min-max bars) and the floor, per chunk size."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, ps in _series(points).items():
        x = [p["prompt_tokens"] for p in ps]
        for kind, style in (("cold", "-"), ("warm", "--")):
            if f"{kind}_ttft" not in ps[0]:
                continue
            mid = [p[f"{kind}_ttft"]["median"] for p in ps]
            err = [[m - p[f"{kind}_ttft"]["min"] for m, p in zip(mid, ps)], [p[f"{kind}_ttft"]["max"] - m for m, p in zip(mid, ps)]]
            ax.errorbar(x, mid, yerr=err, linestyle=style, marker="o", capsize=3, label=f"{kind}, {name}")
        if "floor_s" in ps[0]:
            ax.plot(x, [p["floor_s"] for p in ps], linestyle=":", marker="x", label=f"floor, {name}")
    ax.set_yscale("log")
    ax.set_xlabel("prompt tokens")
    ax.set_ylabel("TTFT (s, median of repeats)")
    ax.set_title("Cold vs warm TTFT and the machine's floor")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def ratios(points: list[dict[str, Any]], out: Path) -> Path:
    """Speedup (cold/warm) and warm/floor per chunk size."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, ps in _series(points).items():
        ps = [p for p in ps if "speedup" in p]
        if not ps:
            continue
        x = [p["prompt_tokens"] for p in ps]
        left.plot(x, [p["speedup"] for p in ps], marker="o", label=name)
        if "warm_over_floor" in ps[0]:
            right.plot(x, [p["warm_over_floor"] for p in ps], marker="o", label=f"{name}: warm/floor")
        if "warm_over_apc" in ps[0]:
            right.plot(x, [p["warm_over_apc"] for p in ps], marker="s", linestyle="--", label=f"{name}: warm/APC warm")
    left.set_title("speedup: cold TTFT / warm TTFT")
    right.set_title("warm TTFT / floor, and / vLLM APC's warm TTFT")
    for ax in (left, right):
        ax.set_xlabel("prompt tokens")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def workload(rows: list[dict[str, Any]], floor_s: float | None, capacity_tokens: int, out_dir: Path) -> list[Path]:
    """Hit rate, TTFT p50/p99 and throughput against the working set / vLLM's KV capacity, one
    line per configuration and one panel per concurrency; the capacity marked, the floor of a
    warm request drawn beside the TTFTs."""
    concurrencies = sorted({r["concurrency"] for r in rows})
    names = list(dict.fromkeys(r["configuration"] for r in rows))
    panels = (
        ("workload-hit-rate.png", "hit rate (prompt tokens from a cache)", (("hit_rate", "-"),)),
        ("workload-ttft.png", "TTFT (s): p50 solid, p99 dashed", (("ttft_p50_s", "-"), ("ttft_p99_s", "--"))),
        ("workload-throughput.png", "throughput (requests/s)", (("req_s", "-"),)),
    )
    written = []
    for filename, ylabel, keys in panels:
        fig, axes = plt.subplots(1, len(concurrencies), figsize=(5.5 * len(concurrencies), 4.2), squeeze=False)
        for ax, c in zip(axes[0], concurrencies):
            for i, name in enumerate(names):
                ps = sorted((r for r in rows if r["configuration"] == name and r["concurrency"] == c), key=lambda r: r["ratio"])
                for key, style in keys:
                    xs = [p["ratio"] for p in ps if p.get(key) is not None]
                    ys = [p[key] for p in ps if p.get(key) is not None]
                    ax.plot(xs, ys, linestyle=style, marker="o", color=f"C{i}", label=f"{name}" + (" p99" if key.endswith("p99_s") else ""))
            if filename == "workload-ttft.png":
                ax.set_yscale("log")
                if floor_s is not None:
                    ax.axhline(floor_s, color="k", linestyle=":", label=f"floor of a warm request ({floor_s:.3f} s)")
            ax.axvline(1.0, color="grey", linestyle="-.", label=f"vLLM KV capacity ({capacity_tokens} tokens)")
            ax.set_xscale("log", base=2)
            ticks = sorted({r["ratio"] for r in rows})
            ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])
            ax.set_xlabel("working set / vLLM KV capacity")
            ax.set_ylabel(ylabel)
            ax.set_title(f"concurrency {c}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / filename, dpi=110)
        plt.close(fig)
        written.append(out_dir / filename)
    return written
