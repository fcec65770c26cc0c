"""A workload run folder (scripts/workload.sh) read back: one row per configuration, concurrency
and working set, from ``vllm bench serve``'s results and both servers' counters; the targets
("where does LMCache pay?"), the answers against the baseline, and the plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reproduce_vllm_lmcache.report import stats
from reproduce_vllm_lmcache.servers.metrics import LMCACHE_L1_EVICTED as L1_EVICTED
from reproduce_vllm_lmcache.servers.metrics import LMCACHE_READS as L1_READS
from reproduce_vllm_lmcache.servers.metrics import LMCACHE_WRITES as L1_WRITES
from reproduce_vllm_lmcache.servers.metrics import VLLM_EXTERNAL_HITS as EXTERNAL
from reproduce_vllm_lmcache.servers.metrics import VLLM_LOCAL_HITS as LOCAL

PREEMPTIONS = "vllm:num_preemptions_total"
LMCACHE_CONFIGS = ("lmcache", "apc+lmcache")
# The bars: where the working set is at least 2x vLLM's capacity, LMCache's TTFT p50 and
# throughput against APC alone; where it fits (0.5x), APC+LMCache against APC alone.
BIG_RATIO, TTFT_BAR, THROUGHPUT_BAR = 2.0, 5.0, 2.0
SMALL_RATIO, OVERHEAD_BAR = 0.5, 0.10


def load(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The points (point.json + the measured pass's result) and the per-start records."""
    points = []
    for path in sorted((run_dir / "points").glob("*/point.json")):
        point = json.loads(path.read_text())
        for p in point["passes"].values():
            result = path.parent / p["result"]
            p["detail"] = json.loads(result.read_text()) if result.is_file() else {}
        points.append(point)
    runs = [json.loads(p.read_text()) for p in sorted((run_dir / "points").glob("run-*.json"))]
    if not points:
        raise FileNotFoundError(f"no points/*/point.json in {run_dir}: run scripts/workload.sh")
    return points, runs


def _ms(detail: dict[str, Any], key: str) -> float | None:
    value = detail.get(key)
    return None if value is None else round(float(value) / 1000, 4)


def measured_passes(point: dict[str, Any]) -> list[dict[str, Any]]:
    """The measured passes of a point ("measured", "measured-2", ...; one in runs before REPRO_WORKLOAD_PASSES)."""
    return [v for k, v in point["passes"].items() if k.startswith("measured")]


def row(point: dict[str, Any]) -> dict[str, Any]:
    m = point["passes"]["measured"]
    c, d = m["counters"], m["detail"]
    prompt = int(m.get("total_input_tokens") or 0)
    local, external = int(c.get(LOCAL, 0)), int(c.get(EXTERNAL, 0))
    duration = float(m.get("duration") or 0) or None
    out: dict[str, Any] = {
        "configuration": point["configuration"],
        "concurrency": point["concurrency"],
        "ratio": point["ratio"],
        "documents": point["documents"],
        "working_set_tokens": point["documents"] * point["prefix_tokens"],
        "capacity_tokens": point["capacity_tokens"],
        "requests": m.get("completed"),
        "failed": m.get("failed"),
        "prompt_tokens": prompt,
        "hit_local": local,
        "hit_external": external,
        "hit_rate": round((local + external) / prompt, 4) if prompt else None,
        "l1_reads": int(c.get(L1_READS, 0)),
        "l1_writes": int(c.get(L1_WRITES, 0)),
        "l1_evicted": int(c.get(L1_EVICTED, 0)),
        "l1_usage_bytes": m.get("l1_usage_bytes"),
        "preemptions": int(c.get(PREEMPTIONS, 0)),
        "req_s": round(float(m["request_throughput"]), 4) if m.get("request_throughput") else None,
        "prompt_tok_s": round(prompt / duration, 1) if duration else None,
        "output_tok_s": round(float(m["output_throughput"]), 2) if m.get("output_throughput") else None,
        **{f"{k}_{p}_s": _ms(d, f"{p}_{k}_ms") for k in ("ttft", "e2el") for p in ("p50", "p90", "p99")},
        # Every measured pass's throughput and TTFT p50: the samples of the targets' intervals.
        "req_s_samples": [float(x["request_throughput"]) for x in measured_passes(point) if x.get("request_throughput")],
        "ttft_p50_samples": [float(x["detail"]["p50_ttft_ms"]) / 1000 for x in measured_passes(point) if x["detail"].get("p50_ttft_ms")],
    }
    if "long_doc_qa" in point:
        r = point["long_doc_qa"]["results"]
        out["ldqa"] = {k: r.get(k) for k in ("successful_requests", "failed_requests", "p50_ttft_ms", "p90_ttft_ms", "input_throughput")}
        out["ldqa"]["hit_external"] = int(point["long_doc_qa"]["counters"].get(EXTERNAL, 0))
        out["ldqa"]["hit_local"] = int(point["long_doc_qa"]["counters"].get(LOCAL, 0))
    return out


def answers(points: list[dict[str, Any]], baseline: str) -> dict[tuple[str, int, float], dict[str, Any]]:
    """Per point: the measured pass's greedy texts against the baseline's at the same point
    (same seed, so the same requests in the same order)."""
    base = {(p["concurrency"], p["ratio"]): p["passes"]["measured"]["detail"] for p in points if p["configuration"] == baseline}
    found = {}
    for p in points:
        ref = base.get((p["concurrency"], p["ratio"]))
        mine = p["passes"]["measured"]["detail"]
        if ref is None or p["configuration"] == baseline:
            continue
        a, b = ref.get("generated_texts") or [], mine.get("generated_texts") or []
        same_len = (ref.get("output_lens") or []) == (mine.get("output_lens") or [])
        differ = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        found[(p["configuration"], p["concurrency"], p["ratio"])] = {
            "compared": min(len(a), len(b)),
            "identical": min(len(a), len(b)) - len(differ) if same_len else 0,
            "first_different": differ[0] if differ else None,
            "output_lens_equal": same_len,
        }
    return found


def floor_s(rows: list[dict[str, Any]], runs: list[dict[str, Any]], prefix_tokens: int, suffix_tokens: int) -> float | None:
    """The physical floor of a warm request: the prefix's KV copied at the measured copy rate plus
    the suffix prefilled at the rate of a cold request (no-cache configuration, one at a time)."""
    cold = [r for r in rows if r["configuration"] == "none" and r["concurrency"] == 1 and r["ttft_p50_s"]]
    if not cold or not runs:
        return None
    machine = runs[0]["machine"]
    per_token = cold[0]["ttft_p50_s"] / (prefix_tokens + suffix_tokens)
    return round(prefix_tokens * machine["kv_bytes_per_token"] / machine["copy_bytes_per_s"] + suffix_tokens * per_token, 4)


def _find(rows: list[dict[str, Any]], name: str, c: int, ratio: float) -> dict[str, Any] | None:
    return next((r for r in rows if (r["configuration"], r["concurrency"], r["ratio"]) == (name, c, ratio)), None)


def _ratio(a: dict[str, Any], b: dict[str, Any], key: str, higher_is_better: bool) -> dict[str, Any]:
    """B/A of one metric over the two points' measured passes, with its 95 % interval where both
    have at least three (points run one after the other: unpaired, not interleaved)."""
    sa, sb = a.get(f"{key}_samples") or [], b.get(f"{key}_samples") or []
    if min(len(sa), len(sb)) >= stats.MIN_SAMPLES:
        e = stats.effect(key, sa, sb, stats.noise_threshold(), paired=False, higher_is_better=higher_is_better)
        return {"ratio": e.ratio, "low": e.low, "high": e.high, "passes": [len(sa), len(sb)]}
    point = {"req_s": "req_s", "ttft_p50": "ttft_p50_s"}[key]
    ratio = b[point] / a[point]
    return {"ratio": ratio, "low": ratio, "high": ratio, "passes": [len(sa), len(sb)]}


def _span(lo: float, hi: float, digits: int = 2) -> str:
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's bars, each with its measured numbers and 95 % interval, judged by the interval
    (reached only when all of it clears the bar; never rounded up). A run with one measured pass
    per point has no interval: it is judged by its point and says so."""
    found = []
    for c in sorted({r["concurrency"] for r in rows}):
        for ratio in sorted({r["ratio"] for r in rows}):
            apc = _find(rows, "apc", c, ratio)
            if apc is None:
                continue
            if ratio >= BIG_RATIO:
                for name in LMCACHE_CONFIGS:
                    r = _find(rows, name, c, ratio)
                    if r is None or not r["ttft_p50_s"] or not apc["req_s"]:
                        continue
                    ttft = _ratio(apc, r, "ttft_p50", False)  # B/A = LMCache's TTFT over APC's: the gain is 1 / it
                    thr = _ratio(apc, r, "req_s", True)
                    gain = (1 / ttft["ratio"], 1 / ttft["high"], 1 / ttft["low"])
                    found.append(
                        {
                            "what": f"{name} vs apc, {ratio:g}x, c={c}",
                            "ttft_p50_gain": round(gain[0], 2),
                            "ttft_p50_gain_95": _span(gain[1], gain[2]),
                            "throughput_gain": round(thr["ratio"], 2),
                            "throughput_gain_95": _span(thr["low"], thr["high"]),
                            "measured_passes": thr["passes"],
                            "external_hit_tokens": r["hit_external"],
                            "reached": gain[1] >= TTFT_BAR and thr["low"] >= THROUGHPUT_BAR and r["hit_external"] > 0,
                            "bar": f"TTFT p50 >= {TTFT_BAR:g}x, throughput >= {THROUGHPUT_BAR:g}x (whole interval), hits from LMCache",
                        }
                    )
            if ratio <= SMALL_RATIO:
                r = _find(rows, "apc+lmcache", c, ratio)
                if r is None or not r["ttft_p50_s"] or not r["req_s"]:
                    continue
                ttft = _ratio(apc, r, "ttft_p50", False)
                thr = _ratio(apc, r, "req_s", True)
                found.append(
                    {
                        "what": f"apc+lmcache vs apc, {ratio:g}x, c={c}",
                        "ttft_p50_cost": round(ttft["ratio"] - 1, 3),
                        "ttft_p50_cost_95": _span(ttft["low"] - 1, ttft["high"] - 1, 3),
                        "throughput_cost": round(1 - thr["ratio"], 3),
                        "throughput_cost_95": _span(1 - thr["high"], 1 - thr["low"], 3),
                        "measured_passes": thr["passes"],
                        "reached": ttft["high"] - 1 <= OVERHEAD_BAR and 1 - thr["low"] <= OVERHEAD_BAR,
                        "bar": f"TTFT p50 and throughput within {OVERHEAD_BAR:.0%} of APC alone (whole interval)",
                    }
                )
    return found


def summarize(run_dir: Path) -> dict[str, Any]:
    points, runs = load(run_dir)
    rows = [row(p) for p in points]
    names = list(dict.fromkeys(r["configuration"] for r in runs)) or [rows[0]["configuration"]]
    baseline = "none" if "none" in names else names[0]
    same = answers(points, baseline)
    for r in rows:
        r["answers"] = same.get((r["configuration"], r["concurrency"], r["ratio"]))
    knobs = runs[0]["knobs"] if runs else {}
    floor = floor_s(rows, runs, knobs.get("prefix_tokens", 0), knobs.get("suffix_tokens", 0)) if knobs else None
    checks = [
        {"what": f"{r['configuration']} c={r['concurrency']} {r['ratio']:g}x: no failed request", "passed": not r["failed"]} for r in rows
    ]
    checks += [
        {
            "what": f"{k[0]} c={k[1]} {k[2]:g}x: {v['identical']}/{v['compared']} answers identical to {baseline}",
            "passed": v["compared"] > 0 and v["identical"] == v["compared"],
        }
        for k, v in same.items()
    ]
    # Hits by source, by metrics: LMCache alone hits only externally, APC alone only locally.
    for r in rows:
        if r["configuration"] == "lmcache":
            checks.append(
                {
                    "what": f"lmcache c={r['concurrency']} {r['ratio']:g}x: hits from LMCache only ({r['hit_external']} external, {r['hit_local']} local)",
                    "passed": r["hit_external"] > 0 and r["hit_local"] == 0,
                }
            )
        if r["configuration"] in ("apc", "none"):
            checks.append(
                {
                    "what": f"{r['configuration']} c={r['concurrency']} {r['ratio']:g}x: no external hit ({r['hit_external']})",
                    "passed": r["hit_external"] == 0,
                }
            )
    return {
        "baseline": baseline,
        "rows": rows,
        "floor_s": floor,
        "targets": targets(rows),
        "checks": checks,
        "knobs": knobs,
        "machine": runs[0]["machine"] if runs else {},
        "starts": runs,
        "passed": all(c["passed"] for c in checks),
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "configuration",
        "c",
        "WS/cap",
        "req",
        "fail",
        "hit local",
        "hit ext",
        "hit rate",
        "L1 rd/wr/ev",
        "req/s",
        "prompt tok/s",
        "TTFT p50",
        "TTFT p90",
        "TTFT p99",
        "E2E p50",
        "E2E p99",
        "same",
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def f(v: Any, digits: int = 3) -> str:
        return "" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    for r in sorted(rows, key=lambda r: (r["concurrency"], r["ratio"], r["configuration"] != "none", r["configuration"])):
        a = r.get("answers")
        cells = (
            r["configuration"],
            r["concurrency"],
            f"{r['ratio']:g}x",
            r["requests"],
            r["failed"],
            r["hit_local"],
            r["hit_external"],
            f(r["hit_rate"], 2),
            f"{r['l1_reads']}/{r['l1_writes']}/{r['l1_evicted']}",
            f(r["req_s"], 2),
            f(r["prompt_tok_s"], 0),
            f(r["ttft_p50_s"]),
            f(r["ttft_p90_s"]),
            f(r["ttft_p99_s"]),
            f(r["e2el_p50_s"]),
            f(r["e2el_p99_s"]),
            f"{a['identical']}/{a['compared']}" if a else "base",
        )
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def ldqa_table(rows: list[dict[str, Any]]) -> str:
    found = [r for r in rows if "ldqa" in r]
    if not found:
        return ""
    lines = [
        "| long-doc-qa | c | WS/cap | requests | failed | hit local | hit ext | TTFT p50 s | TTFT p90 s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(found, key=lambda r: (r["concurrency"], r["ratio"], r["configuration"])):
        q = r["ldqa"]
        lines.append(
            f"| {r['configuration']} | {r['concurrency']} | {r['ratio']:g}x | {q['successful_requests']} | {q['failed_requests']} | "
            f"{q['hit_local']} | {q['hit_external']} | {(q['p50_ttft_ms'] or 0) / 1000:.3f} | {(q['p90_ttft_ms'] or 0) / 1000:.3f} |"
        )
    return "\n".join(lines)


def lines(summary: dict[str, Any]) -> list[str]:
    out = [table(summary["rows"])]
    extra = ldqa_table(summary["rows"])
    if extra:
        out += ["", extra]
    if summary["floor_s"] is not None:
        out += [
            "",
            f"floor of a warm request (prefix KV copied at {summary['machine']['copy_bytes_per_s'] / 1e9:.1f} GB/s + suffix prefill): {summary['floor_s']:.3f} s",
        ]
    out.append("")
    for t in summary["targets"]:
        nums = ", ".join(f"{k} {v}" for k, v in t.items() if k not in ("what", "reached", "bar"))
        out.append(f"{'REACHED' if t['reached'] else 'NOT REACHED'} {t['what']}: {nums} (bar: {t['bar']})")
    out += [f"{'PASS' if c['passed'] else 'FAIL'} {c['what']}" for c in summary["checks"]]
    return out
