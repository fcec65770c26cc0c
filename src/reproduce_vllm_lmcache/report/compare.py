"""``repro compare A B``: B against A, per round (run.json) or per point (bench.json), each row
with the ratio of medians and its 95 % bootstrap interval (report/stats.py). Two recorded runs
were taken at different times, not interleaved: the machine's state in between is part of any
difference, and the output says so (scripts/ab.sh measures two states side by side). Runs from
different machines (CPU model, cores, vector extensions) are not compared at all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reproduce_vllm_lmcache.report import stats

# Config entries that differ between any two runs without making them different experiments.
VOLATILE = {"prompt_seed", "served_model", "REPRO_LOG_DIR"}


def samples(data: dict[str, Any]) -> dict[str, list[float]]:
    """TTFT samples by row: '<prompt> <round>' for runs, 'p<tokens> chunk <n> <cold|warm>' (or
    'p<tokens> APC <cold|warm>' for vLLM's own prefix cache) for sweeps."""
    out: dict[str, list[float]] = {}
    if "points" in data:
        for p in data["points"]:
            served = "APC" if p.get("cache") == "apc" else f"chunk {p['chunk_size']}"
            for kind in ("cold", "warm"):
                if f"{kind}_ttft_samples" in p:
                    out[f"p{p['prompt_tokens']} {served} {kind}"] = p[f"{kind}_ttft_samples"]
    else:
        for r in data["rounds"]:
            key = f"{r.get('configuration') or ''} {r['prompt']} {r['name']}".strip()
            out.setdefault(key, []).append(r["ttft_s"])
    return out


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for k, v in value.items():
            flat.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return flat
    return {prefix: value}


def config_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """'key: A -> B' for every config entry that differs (versions, knobs, checkout edits)."""
    fa, fb = flatten(a), flatten(b)
    keys = sorted(k for k in fa.keys() | fb.keys() if k.split(".")[-1] not in VOLATILE and fa.get(k) != fb.get(k))
    return [f"{k}: {fa.get(k)!r} -> {fb.get(k)!r}" for k in keys]


# What makes two runs come from different machines.
MACHINE_KEYS = ("cpu_model", "cpu_cores", "cpu_features", "machine", "system")


def machine_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in MACHINE_KEYS if a.get(k) != b.get(k)]


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    sa, sb = samples(a), samples(b)
    machines = machine_differences(a["config"], b["config"])
    rows = []
    for k in sa:
        if k not in sb:
            continue
        e = stats.effect(k, sa[k], sb[k], stats.noise_threshold(), paired=False)
        rows.append({"row": k, **e.as_dict(), "verdict": "not comparable" if machines else e.verdict})
    return {"rows": rows, "machine_differences": machines, "config_differences": config_differences(a["config"], b["config"])}


def latest_two(runs_dir: Path, label: str | None) -> tuple[Path, Path]:
    """The two most recent results of one kind (run.json, or bench.json when label is 'bench')."""
    name = "bench.json" if label == "bench" else "run.json"
    pattern = f"*-{label}/{name}" if label else f"*/{name}"
    found = sorted(runs_dir.glob(pattern))
    if len(found) < 2:
        raise FileNotFoundError(f"need two recorded results matching {runs_dir}/{pattern}, found {len(found)}")
    return found[-2], found[-1]


def render(result: dict[str, Any], a: Path, b: Path) -> str:
    lines = [f"compare B={b} against A={a}", ""]
    if result["machine_differences"]:
        lines += [
            "NOT COMPARABLE: the two runs were recorded on different machines, so no verdict is given:",
            *[f"  {d}" for d in result["machine_differences"]],
            "",
        ]
    else:
        lines += [
            "note: two runs taken at different times, not interleaved: the machine's state in between is part of",
            "any difference. For a verdict on a code or knob change, run both side by side: scripts/ab.sh.",
            "",
        ]
    lines.append(f"{'row':34s} {'A s':>8s} {'B s':>8s} {'B/A':>6s}  {'95 % interval':16s} n A/B  verdict")
    for row in result["rows"]:
        interval = f"[{row['low']:.3f}, {row['high']:.3f}]" if row["low"] == row["low"] else "-"
        verdict = row["verdict"] if row["verdict"] in ("not comparable", "too few samples") else row["text"]
        lines.append(
            f"{row['row']:34s} {row['median_a']:8.3f} {row['median_b']:8.3f} {row['ratio']:6.2f}  {interval:16s} "
            f"{row['n_a']}/{row['n_b']}  {verdict}"
        )
    if not result["rows"]:
        lines.append("(no rows in common)")
    diffs = result["config_differences"]
    lines.append("")
    if diffs:
        lines.append("the two runs differ in their configuration, so a change may come from any of these:")
        lines += [f"  {d}" for d in diffs]
    else:
        lines.append("same configuration (versions, knobs, checkout state)")
    return "\n".join(lines)


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def run(a: Path, b: Path) -> tuple[dict[str, Any], str]:
    result = compare(load(a), load(b))
    return result, render(result, a, b)
