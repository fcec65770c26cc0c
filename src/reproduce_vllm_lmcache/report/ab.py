"""The A/B's table (scripts/ab.sh, ``repro ab run``, report.html): per metric both medians, B/A
with its 95 % interval and the verdict; the sample size and why sampling stopped; outliers
shown, not dropped; the checks of every sample (cache used, answers identical across arms)."""

from __future__ import annotations

from typing import Any

# metric -> (label, unit, higher is better)
METRICS: dict[str, tuple[str, str, bool]] = {
    "ttft_cold": ("TTFT cold", "s", False),
    "ttft_warm": ("TTFT warm", "s", False),
    "e2e_cold": ("e2e cold", "s", False),
    "e2e_warm": ("e2e warm", "s", False),
    "throughput": ("throughput", "req/s", True),
    "ttft_p50": ("TTFT p50", "s", False),
    "ttft_p99": ("TTFT p99", "s", False),
}


def measured(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The blocks the statistics count: all but the warm-up blocks."""
    return [b for b in blocks if not b["warmup"]]


def _value(x: float, unit: str) -> str:
    return f"{x:.3f} {unit}" if unit == "s" else f"{x:.2f} {unit}"


def checks(data: dict[str, Any]) -> list[str]:
    """'hit: A 20/20, B 20/20' per check, and answers identical across the arms."""
    kept = measured(data.get("blocks", []))
    if not kept:
        return []
    names = list(kept[0]["samples"]["a"]["checks"])
    lines = []
    for name in names:
        counts = {arm: sum(bool(b["samples"][arm]["checks"].get(name)) for b in kept) for arm in ("a", "b")}
        lines.append(f"{name}: A {counts['a']}/{len(kept)}, B {counts['b']}/{len(kept)}")
    if data.get("measure") == "pairs":
        lines.append(f"same answer in both arms: {sum(bool(b['same_answer']) for b in kept)}/{len(kept)}")
    return lines


def outlier_lines(data: dict[str, Any]) -> list[str]:
    kept = measured(data.get("blocks", []))
    lines: list[str] = []
    if not kept:
        return lines
    for e in data.get("effects", []):
        label, unit, _ = METRICS[e["metric"]]
        for arm in ("a", "b"):
            # (block, value) in the order the statistics saw them
            flat = [(b["index"] + 1, x) for b in kept for x in b["samples"][arm]["metrics"][e["metric"]]]
            lines += [f"{label}, arm {arm.upper()}, block {flat[i][0]}: {_value(flat[i][1], unit)} (kept)" for i in e[f"outliers_{arm}"]]
    return lines


def render(data: dict[str, Any]) -> str:
    arms = data["arms"]
    kept = measured(data.get("blocks", []))
    what = (
        f"{data.get('prompt_tokens')}-token cold/warm pairs"
        if data["measure"] == "pairs"
        else f"workload point {data.get('workload_point')}"
    )
    lines = [
        f"A/B, interleaved: {what}",
        f"  A: {arms['a']['label']}",
        f"  B: {arms['b']['label']}",
        f"{len(kept)} samples per arm in {data.get('sampling_s', 0):.0f} s of sampling "
        f"({len(data.get('blocks', [])) - len(kept)} warm-up block(s) not counted); stopped: {data.get('stopped', '?')}",
        "",
        f"{'metric':12s} {'A median':>12s} {'B median':>12s} {'B/A':>7s}  {'95 % interval':16s} verdict",
    ]
    for e in data.get("effects", []):
        label, unit, _ = METRICS[e["metric"]]
        interval = f"[{e['low']:.3f}, {e['high']:.3f}]" if e["low"] == e["low"] else "-"
        lines.append(
            f"{label:12s} {_value(e['median_a'], unit):>12s} {_value(e['median_b'], unit):>12s} {e['ratio']:7.3f}  {interval:16s} {e['text']}"
        )
    noise = data.get("plan", {}).get("noise")
    if noise is not None:
        lines.append(f"(a change is called only when its whole interval lies beyond B/A = 1 +/- {noise:g})")
    found = checks(data)
    if found:
        lines += ["", "checks: " + "; ".join(found)]
    out = outlier_lines(data)
    if out:
        lines += ["", "outliers (beyond quartile +/- 3 IQR):", *[f"  {line}" for line in out]]
    return "\n".join(lines)
