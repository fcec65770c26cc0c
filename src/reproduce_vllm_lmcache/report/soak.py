"""The soak's verdicts (scripts/soak.sh), computed from its run folder (the load and the samples
are experiments/soak.py's):

- requests: every per-request row of the bench CSVs, failures placed inside or outside the
  restart window (LMCache killed .. ready again + a grace);
- memory: RSS of every server process and the /dev/shm the servers map, growth after warm-up;
- hit rate: vLLM's external (LMCache) hit tokens / queried tokens before the kill and after the
  restart has had time to refill L1 (from the Prometheus counters, vLLM never restarts);
- answers: a few prompts sent twice to the soak's vLLM (the second one a hit) and once to a plain
  vLLM, token by token;
- eviction: L1 evicted chunks in most scrape intervals after warm-up (the L1 is meant to be full).

Over 300 lines: the six verdicts of one run folder, each a few small functions over the same
requests, samples and series.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reproduce_vllm_lmcache.report import judging


@dataclass(frozen=True)
class Window:
    """The restart window: failures inside it are expected (the server is gone)."""

    killed_at: float
    ready_at: float
    grace_s: float

    @property
    def end(self) -> float:
        return self.ready_at + self.grace_s

    def contains(self, t: float) -> bool:
        return self.killed_at <= t <= self.end


@dataclass(frozen=True)
class Bounds:
    warmup_s: float
    recovery_s: float
    rss_growth_mb: float
    shm_growth_mb: float
    hit_recovery: float
    eviction_share: float
    tie_tolerance: float


# --- requests (the bench CSVs) ---------------------------------------------------------------


def load_requests(bench_dir: Path) -> list[dict[str, Any]]:
    """Every measured request of every round: bench/<workload>/round-NNN/bench_results.csv."""
    rows = []
    for path in sorted(bench_dir.glob("*/round-*/bench_results.csv")):
        workload = path.parent.parent.name
        with path.open() as f:
            for r in csv.DictReader(f):
                rows.append(
                    {
                        "workload": workload,
                        "round": path.parent.name,
                        "ok": r["successful"] == "True",
                        "ttft_s": float(r["ttft"]),
                        "submit": float(r["submit_time"]),
                        "finish": float(r["finish_time"]) if r["finish_time"] not in ("", "None") else float(r["submit_time"]),
                        "error": r.get("error") or "",
                    }
                )
    return sorted(rows, key=lambda r: r["submit"])


def mixed_until(rows: list[dict[str, Any]], ended: float) -> float:
    """When the last workload still sending ended: after it, one workload runs alone (the docs loop
    starts no round in the last 20 s) and the hit rate is that workload's, not the mix's."""
    last: dict[str, float] = {}
    for r in rows:
        last[r["workload"]] = max(last.get(r["workload"], 0.0), r["finish"])
    return min([ended, *last.values()])


def overlaps(row: dict[str, Any], window: Window) -> bool:
    """A request in flight at any moment of the window (sent before the kill, finished after)."""
    return row["submit"] <= window.end and row["finish"] >= window.killed_at


def classify(rows: list[dict[str, Any]], window: Window | None) -> dict[str, Any]:
    failed = [r for r in rows if not r["ok"]]
    inside = [r for r in failed if window is not None and overlaps(r, window)]
    outside = [r for r in failed if r not in inside]
    errors: dict[str, int] = {}
    for r in failed:
        errors[r["error"][:80]] = errors.get(r["error"][:80], 0) + 1
    by_workload = {
        w: {"done": sum(r["ok"] for r in rows if r["workload"] == w), "failed": sum(not r["ok"] for r in rows if r["workload"] == w)}
        for w in sorted({r["workload"] for r in rows})
    }
    return {
        "requests": len(rows),
        "done": len(rows) - len(failed),
        "failed": len(failed),
        "failed_in_restart_window": len(inside),
        "failed_outside_restart_window": len(outside),
        "errors": errors,
        "by_workload": by_workload,
        "first_failures_outside": [{k: r[k] for k in ("workload", "round", "submit", "error")} for r in outside[:5]],
    }


def ttft_percentiles(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    ok = sorted(r["ttft_s"] for r in rows if r["ok"] and r["ttft_s"] >= 0)
    if not ok:
        return {"p50": None, "p90": None, "p99": None}

    def pct(q: float) -> float:
        return round(ok[min(len(ok) - 1, int(q * len(ok)))], 3)

    return {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99)}


# --- memory (the sampler's samples.jsonl) ----------------------------------------------------


def load_samples(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def rss_series(samples: list[dict[str, Any]], field: str = "rss_bytes") -> dict[str, list[tuple[float, int]]]:
    """ "role name pid" -> [(t, bytes)] for every process seen: its RSS, or one part of it
    (anon_bytes: private memory, what a leak grows, RSS where the platform does not split it;
    shmem_bytes: touched /dev/shm pages; anon_heap_bytes, anon_mmap_bytes, anon_regions: where
    the private memory sits, only in samples that have them)."""
    series: dict[str, list[tuple[float, int]]] = {}
    for s in samples:
        for p in s["processes"]:
            value = p.get(field, p["rss_bytes"] if field in ("rss_bytes", "anon_bytes") else None)
            if value is not None:
                series.setdefault(f"{p['role']} {p['name']} {p['pid']}", []).append((s["t"], value))
    return series


def growth(points: list[tuple[float, float]], warmup_s: float, n: int = 3) -> dict[str, Any] | None:
    """Growth after warm-up: median of the last n values minus median of the first n values
    at least warmup_s after the series began. None when the series is too short to tell."""
    if not points:
        return None
    start = points[0][0] + warmup_s
    after = [v for t, v in points if t >= start]
    if len(after) < 2 * n:
        return None
    first, last = statistics.median(after[:n]), statistics.median(after[-n:])
    return {"after_warmup": first, "at_end": last, "growth": last - first, "max": max(after), "samples": len(after)}


# The parts of a process's memory shown beside its private-memory growth (label -> sample field).
PARTS = {"rss": "rss_bytes", "shmem": "shmem_bytes", "heap": "anon_heap_bytes", "mmap": "anon_mmap_bytes", "regions": "anon_regions"}


def memory_verdicts(samples: list[dict[str, Any]], bounds: Bounds) -> dict[str, Any]:
    """Private memory (RssAnon where Linux tells it, else RSS) judged per process; total RSS
    and touched shared memory shown beside it (a /dev/shm segment's pages join RSS when first
    touched, up to the segment's size: growth, but not a leak)."""
    processes = {}
    parts = {label: rss_series(samples, field) for label, field in PARTS.items()}
    mallocs = {f"{p['role']} {p['name']} {p['pid']}": p["malloc"] for s in samples for p in s["processes"] if "malloc" in p}
    for name, points in rss_series(samples, "anon_bytes").items():
        g = growth(points, bounds.warmup_s)
        if g is not None:
            processes[name] = {k: round(v / 1e6, 1) if k != "samples" else v for k, v in g.items()}
            for label, series in parts.items():
                other = growth(series.get(name, []), bounds.warmup_s)
                if label == "regions":
                    processes[name]["regions"] = [other["after_warmup"], other["at_end"]] if other else None
                else:
                    processes[name][f"{label}_growth"] = round(other["growth"] / 1e6, 1) if other else None
            processes[name]["malloc"] = mallocs.get(name)
    shm = [(s["t"], s["shm_mapped_bytes"]) for s in samples]
    shm_g = growth(shm, bounds.warmup_s)
    worst = max(processes.items(), key=lambda kv: kv[1]["growth"], default=(None, None))
    rss_ok = bool(processes) and all(p["growth"] <= bounds.rss_growth_mb for p in processes.values())
    shm_ok = shm_g is not None and shm_g["growth"] / 1e6 <= bounds.shm_growth_mb
    return {
        "rss": {
            "passed": rss_ok,
            "bound_mb": bounds.rss_growth_mb,
            "processes_judged": len(processes),
            "worst_process": worst[0],
            "worst_growth_mb": worst[1]["growth"] if worst[1] else None,
            "worst_rss_growth_mb": worst[1]["rss_growth"] if worst[1] else None,
            "worst_shmem_growth_mb": worst[1]["shmem_growth"] if worst[1] else None,
            "detail": f"{len(processes)} processes; largest private-memory (RssAnon) growth after warm-up "
            f"{worst[1]['growth'] if worst[1] else 'n/a'} MB ({worst[0]}; its RSS "
            f"{worst[1]['rss_growth'] if worst[1] else 'n/a'} MB), bound {bounds.rss_growth_mb:g} MB",
        },
        "shm": {
            "passed": shm_ok,
            "bound_mb": bounds.shm_growth_mb,
            "growth_mb": round(shm_g["growth"] / 1e6, 1) if shm_g else None,
            "max_mb": round(shm_g["max"] / 1e6, 1) if shm_g else None,
            "detail": (
                f"/dev/shm mapped by the servers: {shm_g['after_warmup'] / 1e6:.1f} MB after warm-up, {shm_g['at_end'] / 1e6:.1f} MB "
                f"at the end, bound +{bounds.shm_growth_mb:g} MB"
            )
            if shm_g
            else "too few samples after warm-up",
        },
        "processes": processes,
    }


# --- hit rate and eviction (the Prometheus series) -------------------------------------------


def values(series: dict[str, Any], name: str) -> list[tuple[float, float]]:
    """The points of a single-series query (the first series; [] when Prometheus had none)."""
    found = series.get(name, {}).get("series", [])
    return [(t, v) for t, v in found[0]["values"]] if found else []


def at(points: list[tuple[float, float]], t: float) -> float | None:
    """The last value at or before t (a counter's reading); the first one when t precedes them
    all (the query range starts where the load starts)."""
    before = [v for ts, v in points if ts <= t]
    return before[-1] if before else (points[0][1] if points else None)


def hit_rate(hits: list[tuple[float, float]], queries: list[tuple[float, float]], start: float, end: float) -> float | None:
    """Hit tokens / queried tokens between two readings of monotonic counters."""
    h0, h1, q0, q1 = at(hits, start), at(hits, end), at(queries, start), at(queries, end)
    if None in (h0, h1, q0, q1) or q1 - q0 <= 0:  # type: ignore[operator]
        return None
    return round((h1 - h0) / (q1 - q0), 4)  # type: ignore[operator]


def hit_verdict(
    series: dict[str, Any], started: float, ended: float, window: Window | None, bounds: Bounds, mixed: float | None = None
) -> dict[str, Any]:
    """The hit rate after the restart against before it, both over the mixed load (``mixed``: when
    it ended, see mixed_until; default the load's end)."""
    hits, queries = values(series, "vllm_external_hit_tokens"), values(series, "vllm_external_query_tokens")
    mixed = ended if mixed is None else mixed
    if window is None:
        return {"passed": False, "detail": "no restart recorded"}
    before = hit_rate(hits, queries, started + bounds.warmup_s, window.killed_at)
    after = hit_rate(hits, queries, window.ready_at + bounds.recovery_s, mixed)
    ok = before is not None and after is not None and after >= bounds.hit_recovery * before
    alone = f" ({ended - mixed:.0f} s before the load's end: one workload ran alone after)" if ended - mixed >= 1 else ""
    return {
        "passed": ok,
        "before_restart": before,
        "after_restart": after,
        "required_ratio": bounds.hit_recovery,
        "whole_run": hit_rate(hits, queries, started, ended),
        "mixed_load_until": mixed,
        "detail": f"vLLM external hit rate {before} from warm-up to the kill, {after} from {bounds.recovery_s:g} s after the "
        f"restart to the end of the mixed load{alone}; needs >= {bounds.hit_recovery:g} x before",
    }


def eviction_verdict(series: dict[str, Any], started: float, bounds: Bounds) -> dict[str, Any]:
    points = [(t, v) for t, v in values(series, "l1_evicted_chunks_per_s") if t >= started + bounds.warmup_s]
    busy = sum(1 for _, v in points if v > 0)
    share = busy / len(points) if points else 0.0
    return {
        "passed": share >= bounds.eviction_share,
        "share_of_samples_evicting": round(share, 3),
        "samples": len(points),
        "detail": f"L1 evicted chunks in {busy} of {len(points)} Prometheus samples after warm-up ({share:.0%}); "
        f"needs >= {bounds.eviction_share:.0%}",
    }


# --- answers ---------------------------------------------------------------------------------


def answer_verdict(soak: list[dict[str, Any]], baseline: list[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    base = {b["prompt"]: b for b in baseline}
    rows = []
    for a in soak:
        b = base.get(a["prompt"])
        div = judging.divergence(b, a) if b else {"index": None}
        rows.append(
            {
                "prompt": a["prompt"],
                "prompt_tokens": a["prompt_tokens"],
                "hit_tokens": a["vllm_external_hit_tokens"],
                "identical": b is not None and div is None,
                "tie": judging.is_tie(div, tolerance),
                "divergence": div,
            }
        )
    same = sum(1 for r in rows if r["identical"] or r["tie"])
    hit = sum(1 for r in rows if r["hit_tokens"] > 0)
    ok = bool(rows) and same == len(rows) and hit == len(rows)
    return {
        "passed": ok,
        "prompts": len(rows),
        "token_identical": sum(r["identical"] for r in rows),
        "hits": hit,
        "rows": rows,
        "detail": f"{same}/{len(rows)} answers of the soak's vLLM (each a hit: {hit}/{len(rows)}) token-identical to plain vLLM",
    }


# --- the cache simulator ---------------------------------------------------------------------

SWEEP_ROW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s+(\d+(?:\.\d+)?)%\s*$")


def parse_sweep(text: str) -> list[tuple[float, float]]:
    """(capacity GiB, hit rate 0..1) rows of `lmcache tool cache-simulator sweep`'s stdout table."""
    return [(float(m.group(1)), float(m.group(2)) / 100) for line in text.splitlines() if (m := SWEEP_ROW.match(line))]


def kv_bytes_per_chunk(status: dict[str, Any], chunk_size: int) -> int:
    """From the LMCache /status: cache_size_per_token of the (single) registered vLLM x chunk size.
    (The simulator's own detection fails on "torch.float32"-style dtypes.)"""
    metas = status.get("cache_context_meta") or {}
    entries = metas.values() if isinstance(metas, dict) else metas
    for meta in entries:
        per_token = meta.get("kv_cache_layout", {}).get("cache_size_per_token")
        if per_token:
            return int(per_token) * chunk_size
    raise FileNotFoundError("the LMCache /status has no cache_context_meta with cache_size_per_token (no vLLM registered?)")


def simulated_at(curve: list[tuple[float, float]], capacity_gib: float) -> float | None:
    """The curve's hit rate at a capacity (linear between the log-spaced points)."""
    for (c0, h0), (c1, h1) in zip(curve, curve[1:]):
        if c0 <= capacity_gib <= c1:
            return round(h0 + (h1 - h0) * (capacity_gib - c0) / (c1 - c0), 4) if c1 > c0 else h0
    return None


# --- the whole run ---------------------------------------------------------------------------


def read_json(path: Path, missing: Any) -> Any:
    """A file the run may not have got to (the script goes on past a failed step): ``missing``."""
    return json.loads(path.read_text()) if path.is_file() else missing


def summarize(run_dir: Path, bounds: Bounds, l1_gib: float) -> dict[str, Any]:
    meta = json.loads((run_dir / "soak-times.json").read_text())
    started, ended = float(meta["load_started"]), float(meta["load_ended"])
    window = Window(float(meta["killed_at"]), float(meta["ready_at"]), float(meta["grace_s"])) if "ready_at" in meta else None
    rows = load_requests(run_dir / "bench")
    requests = classify(rows, window)
    series = read_json(run_dir / "prometheus-series.json", {})
    samples = load_samples(run_dir / "samples.jsonl")
    memory = memory_verdicts(samples, bounds)
    soak_answers = read_json(run_dir / "answers-lmcache.json", [])
    base_answers = read_json(run_dir / "answers-baseline.json", [])
    hit = hit_verdict(series, started, ended, window, bounds, mixed_until(rows, ended))
    curve = parse_sweep((run_dir / "sweep.txt").read_text()) if (run_dir / "sweep.txt").is_file() else []
    lm_hits, lm_queries = values(series, "lmcache_hit_tokens"), values(series, "lmcache_requested_tokens")
    simulator = {
        "curve": [{"capacity_gib": c, "hit_rate": h} for c, h in curve],
        "observed_vllm_hit_rate": hit.get("whole_run"),
        "observed_lmcache_hit_rate_before_restart": hit_rate(lm_hits, lm_queries, started, window.killed_at) if window else None,
        "l1_size_gib": l1_gib,
        "simulated_at_l1_size": simulated_at(curve, l1_gib),
        "simulated_at_watermark": simulated_at(curve, 0.8 * l1_gib),
    }
    failures_ok = requests["failed_outside_restart_window"] == 0 and requests["done"] > 0 and window is not None
    verdicts = {
        "no failures outside the restart window": {
            "passed": failures_ok,
            "failed_inside": requests["failed_in_restart_window"],
            "failed_outside": requests["failed_outside_restart_window"],
            "detail": f"{requests['done']} requests done; failed {requests['failed_in_restart_window']} inside the restart window, "
            f"{requests['failed_outside_restart_window']} outside",
        },
        "private memory (RSS) growth after warm-up": memory["rss"],
        "/dev/shm growth after warm-up": memory["shm"],
        "hit rate back after the restart": hit,
        "eviction ran all the time": eviction_verdict(series, started, bounds),
        "answers token-identical to a no-cache baseline": answer_verdict(soak_answers, base_answers, bounds.tie_tolerance),
    }
    return {
        "scenario": "soak",
        "passed": all(v["passed"] for v in verdicts.values()),
        "duration_s": round(ended - started, 1),
        "restart": {
            "killed_at": window.killed_at,
            "ready_at": window.ready_at,
            "window_end": window.end,
            "down_s": round(window.ready_at - window.killed_at, 1),
        }
        if window
        else None,
        "verdicts": {k: {kk: vv for kk, vv in v.items() if kk != "rows"} for k, v in verdicts.items()},
        "requests": requests,
        "ttft_s": {
            "all": ttft_percentiles(rows),
            **{w: ttft_percentiles([r for r in rows if r["workload"] == w]) for w in requests["by_workload"]},
        },
        "processes": memory["processes"],
        "answers": verdicts["answers token-identical to a no-cache baseline"].get("rows", []),
        "simulator": simulator,
        "times": meta,
    }


def lines(summary: dict[str, Any]) -> list[str]:
    out = [f"{'PASS' if v['passed'] else 'FAIL'} {name}: {v['detail']}" for name, v in summary["verdicts"].items()]
    sim = summary["simulator"]
    out.append(
        f"cache simulator (LRU) at the L1 size {sim['l1_size_gib']} GiB: {sim['simulated_at_l1_size']}, at 0.8 x: "
        f"{sim['simulated_at_watermark']}; observed (vLLM external, whole run) {sim['observed_vllm_hit_rate']}"
    )
    return out


def main(args: Any) -> int:
    """``repro soak report RUN_DIR``: verdicts, soak.json and the plots of a soak run folder."""
    from reproduce_vllm_lmcache import knobs
    from reproduce_vllm_lmcache.report import results, soak_plots

    run_dir: Path = args.run_dir
    s = knobs.Soak.from_env()
    summary = summarize(run_dir, Bounds(**s.bounds()), s.l1_size_gb)
    rows = load_requests(run_dir / "bench")
    series = read_json(run_dir / "prometheus-series.json", {})
    samples = load_samples(run_dir / "samples.jsonl")
    soak_plots.timeline(rows, series, samples, summary["restart"], summary["times"]["load_started"], run_dir / "soak-timeline.png")
    sim = summary["simulator"]
    if sim["curve"]:
        soak_plots.simulator(sim["curve"], sim["observed_vllm_hit_rate"], s.l1_size_gb, run_dir / "soak-simulator.png")
    summary["config"] = {"knobs": knobs.resolved(), **results.environment()}
    path = results.write(run_dir, "soak.json", summary, latest=False)
    print("\n".join(lines(summary)))
    print(f"recorded {path} and plots soak-timeline.png" + (", soak-simulator.png" if sim["curve"] else ""))
    return 0 if summary["passed"] else 1
