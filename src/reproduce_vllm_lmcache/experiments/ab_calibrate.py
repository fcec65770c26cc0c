"""The A/B's calibration (scripts/calibrate.sh): how often an A/A (the same code in both arms) is
called faster or slower, how often a planted slowdown is found and whether its interval holds
what the slowdown adds, and the smallest effect the default run detects per metric.

The planted slowdown is a real one-line edit in the editable LMCache checkout,
``time.sleep(SECONDS)`` at the top of the LMCache server's ``retrieve`` handler (lmcache_driven
mode: once per warm request), made by ``repro ab plant`` and undone by ``repro ab unplant``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

from reproduce_vllm_lmcache.knobs import KnobError
from reproduce_vllm_lmcache.report.ab import METRICS, measured
from reproduce_vllm_lmcache.workspace import pins
from reproduce_vllm_lmcache.workspace.checkouts import git

TARGET = "lmcache/v1/multiprocess/modules/lmcache_driven_transfer.py"
MARK = "# planted by scripts/calibrate.sh"


def _checkout() -> Path:
    return next(src.path for src in pins.sources() if src.checkout == "LMCache")


def planted_line(seconds: float) -> str:
    return f"        time.sleep({seconds})  {MARK}\n"


def plant(text: str, seconds: float) -> tuple[str, int]:
    """The module's text with the sleep after the first statement of ``retrieve``'s body that
    starts its timer (``st = time.perf_counter()``); and that line's number (1-based)."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("def retrieve(")), None)
    if start is None:
        raise KnobError(f"LMCache/{TARGET}: no retrieve() (another LMCache version?)")
    at = next((i for i in range(start, len(lines)) if lines[i].strip() == "st = time.perf_counter()"), None)
    if at is None:
        raise KnobError(f"LMCache/{TARGET}: retrieve() has no 'st = time.perf_counter()' to plant after")
    lines.insert(at + 1, planted_line(seconds))
    return "".join(lines), at + 2


def cmd_plant(args: argparse.Namespace) -> int:
    checkout = _checkout()
    if git(checkout, "status", "--porcelain", "--untracked-files=no").stdout.strip():
        raise KnobError("LMCache/ has edits: the calibration's arm B must be HEAD plus the planted line only (commit or stash them)")
    path = checkout / TARGET
    text, line = plant(path.read_text(), args.seconds)
    path.write_text(text)
    print(f"calibrate: planted time.sleep({args.seconds}) at LMCache/{TARGET}:{line}")
    return 0


def cmd_unplant(args: argparse.Namespace) -> int:
    path = _checkout() / TARGET
    if MARK in path.read_text():
        git(_checkout(), "checkout", "--", TARGET)
        print(f"calibrate: LMCache/{TARGET} restored")
    return 0


def sleep_cost(seconds: float, n: int = 300) -> float:
    """What ``time.sleep(seconds)`` takes on this machine, alone (median, seconds)."""
    took = []
    for _ in range(n):
        t = time.perf_counter()
        time.sleep(seconds)
        took.append(time.perf_counter() - t)
    return statistics.median(took)


RETRIEVED = re.compile(r"Retrieved \d+ tokens in ([\d.]+) seconds")


def retrieve_ms(log: Path) -> list[float]:
    """LMCache's own duration of every retrieve in a server log (its INFO line, timed from the
    handler's first statement, so the planted sleep is inside it), in milliseconds."""
    if not log.is_file():
        return []
    return [float(m.group(1)) * 1000 for m in RETRIEVED.finditer(log.read_text(errors="replace"))]


def _sessions(run: Path) -> list[dict[str, Any]]:
    data = json.loads((run / "ab.json").read_text())
    return list(data.get("sessions") or [data])


def tally(sessions: list[dict[str, Any]], noise: float) -> dict[str, dict[str, int]]:
    """Per metric, how many sessions gave each verdict, judged at noise threshold ``noise``
    (each session's interval as recorded, its verdict recomputed)."""
    from reproduce_vllm_lmcache.report import stats  # numpy: only when summarising

    out: dict[str, dict[str, int]] = {}
    for s in sessions:
        for e in s["effects"]:
            word = e["verdict"] if e["low"] != e["low"] else stats.judge(e["low"], e["high"], noise, e.get("higher_is_better", False))
            out.setdefault(e["metric"], {}).setdefault(word, 0)
            out[e["metric"]][word] += 1
    return out


THRESHOLDS = (0.0, 0.005, 0.01, 0.02)


def by_threshold(aa: list[dict[str, Any]], planted: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trade-off a noise threshold makes, on these runs: A/A false verdicts against planted
    detections, per threshold."""
    rows = []
    for noise in THRESHOLDS:
        a, p = tally(aa, noise), tally(planted, noise)
        rows.append(
            {
                "noise_threshold": noise,
                "aa_false": {m: v.get("slower", 0) + v.get("faster", 0) for m, v in a.items()},
                "planted_warm_slower": p.get("ttft_warm", {}).get("slower", 0),
            }
        )
    return rows


def detectable(sessions: list[dict[str, Any]], noise: float) -> dict[str, float]:
    """Per metric, the smallest effect these runs detect: the noise threshold plus the median
    width of their 95 % intervals (an effect that size puts the interval's near end beyond the
    threshold in about 97.5 % of runs)."""
    widths: dict[str, list[float]] = {}
    for s in sessions:
        for e in s["effects"]:
            if e["low"] == e["low"]:
                widths.setdefault(e["metric"], []).append(e["high"] - e["low"])
    return {m: round(noise + statistics.median(w), 4) for m, w in widths.items()}


def added_ms(sessions: list[dict[str, Any]], metric: str = "ttft_warm") -> list[dict[str, float]]:
    """Per session, what B added to A in milliseconds (B/A - 1 times A's median) with its interval."""
    out = []
    for s in sessions:
        e = next(e for e in s["effects"] if e["metric"] == metric)
        base = e["median_a"] * 1000
        out.append({"ms": (e["ratio"] - 1) * base, "low": (e["low"] - 1) * base, "high": (e["high"] - 1) * base})
    return out


def pooled_added_ms(sessions: list[dict[str, Any]], metric: str = "ttft_warm") -> float:
    """The planted line's cost in the request, from every warm pair of every session together:
    the median paired difference B - A, in milliseconds."""
    diffs = [
        (b - a) * 1000
        for s in sessions
        for blk in measured(s["blocks"])
        for a, b in zip(blk["samples"]["a"]["metrics"][metric], blk["samples"]["b"]["metrics"][metric], strict=True)
    ]
    return float(statistics.median(diffs))


def summary(aa: Path, planted: Path, sleep_s: float) -> dict[str, Any]:
    from reproduce_vllm_lmcache.report import stats  # numpy: only when summarising

    aa_sessions, pl_sessions = _sessions(aa), _sessions(planted)
    noise = stats.noise_threshold()  # the verdicts as a run with today's default would give them
    aa_tally, pl_tally = tally(aa_sessions, noise), tally(pl_sessions, noise)
    pooled = pooled_added_ms(pl_sessions)
    per_session = added_ms(pl_sessions)
    retrieves = {arm: retrieve_ms(planted / "logs" / f"lmcache-{arm}.log") for arm in ("a", "b")}
    in_server = statistics.median(retrieves["b"]) - statistics.median(retrieves["a"]) if all(retrieves.values()) else None
    return {
        "noise_threshold": noise,
        "aa": {"run": aa.name, "sessions": len(aa_sessions), "verdicts": aa_tally},
        "aa_false_verdicts": {m: v.get("slower", 0) + v.get("faster", 0) for m, v in aa_tally.items()},
        "aa_sessions_with_any_false_verdict": sum(
            any(e["low"] == e["low"] and stats.judge(e["low"], e["high"], noise) != "no change" for e in x["effects"]) for x in aa_sessions
        ),
        "planted": {
            "run": planted.name,
            "sessions": len(pl_sessions),
            "verdicts": pl_tally,
            "sleep_s": sleep_s,
            "sleep_alone_ms": round(sleep_cost(sleep_s) * 1000, 3),
            "added_ms_pooled": round(pooled, 2),
            "added_ms_per_session": [{k: round(v, 2) for k, v in x.items()} for x in per_session],
            "intervals_holding_the_added_ms": sum(x["low"] <= pooled <= x["high"] for x in per_session),
            # What the line adds inside LMCache: its own retrieve timings, arm B's median less arm A's.
            "retrieves_logged": [len(retrieves["a"]), len(retrieves["b"])],
            "retrieve_median_ms": [statistics.median(v) if v else None for v in (retrieves["a"], retrieves["b"])],
            "added_ms_in_lmcache_retrieve": None if in_server is None else round(in_server, 2),
            "intervals_holding_the_retrieve_addition": None
            if in_server is None
            else sum(x["low"] <= in_server <= x["high"] for x in per_session),
        },
        "planted_detected": pl_tally.get("ttft_warm", {}).get("slower", 0),
        "by_threshold": by_threshold(aa_sessions, pl_sessions),
        "smallest_detectable_effect": detectable(aa_sessions, noise),
        "sampling_s_per_session": statistics.median(s["sampling_s"] for s in aa_sessions + pl_sessions),
    }


def markdown(s: dict[str, Any]) -> str:
    p = s["planted"]
    lines = [
        "# A/B calibration",
        "",
        f"A/A ({s['aa']['sessions']} A/Bs, the same code in both arms), sessions called faster or slower, per metric:",
        "",
        "| metric | A/A false verdicts | planted: verdicts | smallest effect detected |",
        "|---|---:|---|---:|",
    ]
    for m, label in ((m, METRICS[m][0]) for m in s["aa"]["verdicts"]):
        pv = ", ".join(f"{k} {v}" for k, v in sorted(p["verdicts"].get(m, {}).items()))
        lines.append(
            f"| {label} | {s['aa_false_verdicts'][m]} of {s['aa']['sessions']} | {pv} | {s['smallest_detectable_effect'].get(m, 0) * 100:.1f} % |"
        )
    lines += [
        "",
        f"Planted: `time.sleep({p['sleep_s']})` in LMCache's retrieve handler ({p['sleep_alone_ms']:.2f} ms alone on this machine); "
        f"warm TTFT called slower in {s['planted_detected']} of {p['sessions']}; it adds {p['added_ms_pooled']:.1f} ms to the warm "
        f"request (median paired difference over every warm pair of the {p['sessions']} A/Bs); "
        f"{p['intervals_holding_the_added_ms']} of {p['sessions']} intervals hold it. Inside LMCache (its own retrieve log, "
        f"{p['retrieves_logged'][0]} and {p['retrieves_logged'][1]} retrieves): median {p['retrieve_median_ms'][0]} ms in A, "
        f"{p['retrieve_median_ms'][1]} ms in B, +{p['added_ms_in_lmcache_retrieve']} ms; "
        f"{p['intervals_holding_the_retrieve_addition']} of {p['sessions']} warm-TTFT intervals hold that.",
        f"A/As with any metric called faster or slower: {s['aa_sessions_with_any_false_verdict']} of {s['aa']['sessions']}.",
        "",
        "The same intervals judged at other noise thresholds (REPRO_NOISE_THRESHOLD):",
        "",
        "| threshold | A/A false: TTFT warm | TTFT cold | e2e cold | e2e warm | planted warm TTFT called slower |",
        "|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {r['noise_threshold'] * 100:.1f} % | "
            + " | ".join(str(r["aa_false"].get(m, 0)) for m in ("ttft_warm", "ttft_cold", "e2e_cold", "e2e_warm"))
            + f" | {r['planted_warm_slower']} of {p['sessions']} |"
            for r in s["by_threshold"]
        ],
        "",
        f"Verdicts above at the noise threshold {s['noise_threshold'] * 100:.1f} %; median sampling time per A/B {s['sampling_s_per_session']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def cmd_summary(args: argparse.Namespace) -> int:
    runs = sorted(p for p in (args.run_dir / "runs").iterdir() if (p / "ab.json").is_file())
    aa = next((p for p in runs if p.name.endswith("-aa")), None)
    planted = next((p for p in runs if p.name.endswith("-planted")), None)
    if not aa or not planted:
        raise FileNotFoundError(f"{args.run_dir}/runs holds no -aa and -planted A/B")
    found = summary(aa, planted, args.seconds)
    (args.run_dir / "calibration.json").write_text(json.dumps(found, indent=1) + "\n")
    text = markdown(found)
    (args.run_dir / "calibration.md").write_text(text)
    print(text)
    return 0


def register(ab: Any) -> None:
    p = ab.add_parser("plant", help="the calibration's planted slowdown: time.sleep(SECONDS) in LMCache's retrieve handler")
    p.add_argument("--seconds", type=float, required=True)
    p.set_defaults(func=cmd_plant)
    ab.add_parser("unplant", help="undo `repro ab plant` (restore the file from git)").set_defaults(func=cmd_unplant)
    p = ab.add_parser("calibration", help="the calibration's verdict tally, added time and smallest detectable effects")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--seconds", type=float, required=True, help="the planted sleep")
    p.set_defaults(func=cmd_summary)
