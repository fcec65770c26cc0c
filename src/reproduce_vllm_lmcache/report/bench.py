"""The bench sweep's run folder (scripts/bench.sh): its ``points-*.json`` merged into ``bench.json``
with the floor of each point, the tables and the plots (``repro bench-report``), and the
``lmcache bench engine`` summaries side by side (``repro engine-bench-report``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from reproduce_vllm_lmcache.report import floor, stats


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
            # Points of one sweep taken one after the other, not interleaved: an interval, no pairing.
            p["cold_vs_no_connector"] = stats.effect(
                "cold TTFT", base["cold_ttft_samples"], p["cold_ttft_samples"], stats.noise_threshold(), paired=False
            ).as_dict()
        own = apc.get(p["prompt_tokens"])
        if own and "warm_ttft_s" in p:
            p["apc_warm_ttft_s"] = own["warm_ttft_s"]
            p["warm_over_apc"] = round(p["warm_ttft_s"] / own["warm_ttft_s"], 2)
            if "warm_ttft_samples" in own and "warm_ttft_samples" in p:
                p["warm_vs_apc"] = stats.effect(
                    "warm TTFT", own["warm_ttft_samples"], p["warm_ttft_samples"], stats.noise_threshold(), paired=False
                ).as_dict()
    return points


def interval(e: dict[str, Any] | None) -> str:
    """' [0.95, 1.08]', the 95 % interval of a ratio ('' without one: too few samples)."""
    return f" [{e['low']:.2f}, {e['high']:.2f}]" if e and e.get("low") == e.get("low") else ""


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
        overhead = f"{vs['ratio']:.2f}{interval(vs)} ({vs['verdict']})" if vs else ""
        apc = f"{p['apc_warm_ttft_s']:.3f} | {p['warm_over_apc']:.2f}{interval(p.get('warm_vs_apc'))}" if "apc_warm_ttft_s" in p else " | "
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


def main(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.report import plots, results

    data, path = report(args.run_dir)
    plots.ttft(data["points"], args.run_dir / "bench-ttft.png")
    plots.ratios(data["points"], args.run_dir / "bench-ratios.png")
    results.write(args.run_dir, path.name, data, latest=False)
    print(f"LMCache code: REPRO_PATCHES={data['config'].get('patches', 'all')} (docs/setup.md)")
    print(table(data["points"]))
    print()
    print("where a warm request's time goes (medians, seconds):")
    print(breakdown_table(data["points"]))
    print()
    for c in data["configurations"]:
        m = c["machine"]
        print(
            f"{c['configuration']}: vLLM ready in {c['vllm_ready_s']} s; one-token TTFT {m['one_token_ttft_s']:.3f} s, "
            f"HTTP round trip {m['http_rtt_s'] * 1000:.1f} ms, copy {m['copy_bytes_per_s'] / 1e9:.1f} GB/s, "
            f"KV {m['kv_bytes_per_token']} bytes/token"
        )
    print(f"recorded {path} and plots bench-ttft.png, bench-ratios.png")
    return 0


def engine_main(args: argparse.Namespace) -> int:
    """The `lmcache bench engine` summaries of a run folder, side by side, into engine_bench.json."""
    from reproduce_vllm_lmcache.report import results

    summaries = {}
    for path in sorted(args.run_dir.glob("*/bench_summary.json")):
        summaries[path.parent.name] = json.loads(path.read_text())["results"]
    if not summaries:
        raise FileNotFoundError(f"no */bench_summary.json in {args.run_dir}")
    fields = (
        "successful_requests",
        "failed_requests",
        "mean_ttft_ms",
        "p50_ttft_ms",
        "p90_ttft_ms",
        "mean_request_latency_ms",
        "input_throughput",
    )
    print(f"| workload, configuration | {' | '.join(fields)} |")
    print("|---|" + "---:|" * len(fields))
    for name, res in summaries.items():
        print(f"| {name} | " + " | ".join(f"{res[f]:.1f}" if isinstance(res[f], float) else str(res[f]) for f in fields) + " |")
    path = results.write(args.run_dir, "engine_bench.json", {"summaries": summaries}, latest=False)
    print(f"recorded {path}")
    return 0 if all(r["failed_requests"] == 0 and r["successful_requests"] > 0 for r in summaries.values()) else 1
