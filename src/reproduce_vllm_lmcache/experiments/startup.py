"""Where a vLLM start goes: per-process phases from its log, the script's own timings, and the
cost of the first request after the start (scripts/startup.sh)."""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from reproduce_vllm_lmcache import config, knobs
from reproduce_vllm_lmcache.experiments import client
from reproduce_vllm_lmcache.servers import commands

# "(APIServer pid=12) INFO 11-30 12:31:48 [api_utils.py:347] ..."
_LINE = re.compile(r"^\((?P<proc>[A-Za-z_-]+)(?:-\d+)? pid=(?P<pid>\d+)\) \w+ (?P<stamp>\d\d-\d\d \d\d:\d\d:\d\d) ")

# Milestones of a start, in order: (name, process, text in the line).
MILESTONES = (
    ("api_server_first_line", "APIServer", ""),
    ("engine_core_first_line", "EngineCore", ""),
    ("model_loaded", "", "Loading weights took"),
    ("kv_cache_ready", "EngineCore", "init engine (profile, create kv cache"),
    ("http_listening", "APIServer", "Starting vLLM server on"),
)


def log_milestones(text: str, year: int) -> dict[str, float]:
    """Epoch seconds of each milestone found in a vLLM log (second resolution, as vLLM logs)."""
    found: dict[str, float] = {}
    processes: dict[str, set[str]] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        processes.setdefault(m["proc"], set()).add(m["pid"])
        stamp = datetime.strptime(f"{year}-{m['stamp']}", "%Y-%m-%d %H:%M:%S").timestamp()
        for name, proc, needle in MILESTONES:
            if name not in found and (not proc or m["proc"] == proc) and needle in line:
                found[name] = stamp
    found["processes"] = float(len({pid for pids in processes.values() for pid in pids}))
    return found


def phases(started: float, milestones: dict[str, float], ready: float, warmed: float) -> dict[str, float]:
    """Seconds per phase of one start, from the script's clock and the log's milestones."""
    order = [
        ("launch_to_first_log (imports, argument parsing)", "api_server_first_line"),
        ("config_to_engine_process", "engine_core_first_line"),
        ("engine_init (model, KV cache, connector)", "kv_cache_ready"),
        ("api_server_routes", "http_listening"),
    ]
    out: dict[str, float] = {}
    last = started
    for label, key in order:
        if key in milestones:
            out[label] = round(max(0.0, milestones[key] - last), 1)
            last = milestones[key]
    out["until_http_ready"] = round(max(0.0, ready - last), 1)
    out["warm_up"] = round(max(0.0, warmed - ready), 1)
    return out


def first_requests(tokens: int, seed: str) -> dict[str, float]:
    """Two cold requests of the same length with different prompts, as the client sends them
    (logprobs): the first pays whatever one-off work the start left over."""
    from reproduce_vllm_lmcache.servers.settings import Settings

    session = client.Session(Settings.from_env())
    try:
        ttfts = []
        for n in (1, 2):
            ids = session.prompt(tokens, seed=f"{seed}-first{n}")
            r = client.complete(session.client, session.settings, session.model, ids, float(knobs.text("REPRO_REQUEST_TIMEOUT")))
            ttfts.append(float(r["ttft"]))  # type: ignore[arg-type]
    finally:
        session.close()
    return {"first_ttft_s": round(ttfts[0], 3), "second_ttft_s": round(ttfts[1], 3), "first_request_extra_s": round(ttfts[0] - ttfts[1], 3)}


def record(run_dir: Path, configuration: str, log: Path, started: float, ready: float, warmed: float, tokens: int) -> dict[str, Any]:
    """One start of a configuration: timings, phases, first-request cost; appended to starts.jsonl."""
    from reproduce_vllm_lmcache.servers.settings import Settings

    settings = Settings.from_env()
    text = log.read_text(errors="replace")
    milestones = log_milestones(text, time.gmtime(started).tm_year)
    row = {
        "configuration": configuration,
        "layout": settings.vllm_layout,
        "warmup": knobs.text("REPRO_VLLM_WARMUP") == "1",
        "preload": knobs.text("REPRO_PRELOAD") == "auto" and "forked from the preload server" in text,
        "script_to_ready_s": round(warmed - started, 1),
        "vllm_processes": int(milestones.pop("processes", 0)),
        "phases_s": phases(started, milestones, ready, warmed),
        **first_requests(tokens, f"startup-{time.time_ns()}"),
        # Paths relative to the workspace: results carry no machine-specific absolute paths.
        "vllm_argv": [a.replace(f"{config.ROOT}/", "") for a in commands.vllm(settings)],
    }
    with (run_dir / "starts.jsonl").open("a") as out:
        out.write(json.dumps(row) + "\n")
    print(
        f"startup {configuration}: ready for measured requests after {row['script_to_ready_s']} s; "
        f"first request TTFT {row['first_ttft_s']} s, second {row['second_ttft_s']} s"
    )
    return row


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians per configuration."""
    out = []
    for name in dict.fromkeys(r["configuration"] for r in rows):
        mine = [r for r in rows if r["configuration"] == name]
        med = lambda key, mine=mine: round(statistics.median(r[key] for r in mine), 2)  # noqa: E731
        labels = list(mine[0]["phases_s"])
        out.append(
            {
                "configuration": name,
                "layout": mine[0]["layout"],
                "warmup": mine[0]["warmup"],
                "starts": len(mine),
                "preload": all(r.get("preload", False) for r in mine),
                "vllm_processes": mine[0]["vllm_processes"],
                "script_to_ready_s": med("script_to_ready_s"),
                "ready_samples_s": [r["script_to_ready_s"] for r in mine],
                "first_ttft_s": med("first_ttft_s"),
                "second_ttft_s": med("second_ttft_s"),
                "first_request_extra_s": med("first_request_extra_s"),
                "phases_s": {k: round(statistics.median(r["phases_s"].get(k, 0.0) for r in mine), 1) for k in labels},
            }
        )
    return out


def table(summary: list[dict[str, Any]]) -> str:
    head = "| configuration | layout | preload | warm-up | processes | ready (median, s) | starts (s) | first / second request TTFT (s) | first-request extra (s) |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(
            f"| {s['configuration']} | {s['layout']} | {'yes' if s['preload'] else 'no'} | {'yes' if s['warmup'] else 'no'} | {s['vllm_processes']} | "
            f"{s['script_to_ready_s']} | {', '.join(str(x) for x in s['ready_samples_s'])} | "
            f"{s['first_ttft_s']} / {s['second_ttft_s']} | {s['first_request_extra_s']} |"
        )
    lines += [
        "",
        "Phases (median seconds): "
        + "; ".join(f"**{s['configuration']}**: " + ", ".join(f"{k} {v}" for k, v in s["phases_s"].items()) for s in summary),
    ]
    return "\n".join(lines)


def report(run_dir: Path) -> dict[str, Any]:
    rows = [json.loads(line) for line in (run_dir / "starts.jsonl").read_text().splitlines() if line.strip()]
    from reproduce_vllm_lmcache.report import results

    data = {"config": {"knobs": knobs.resolved(), **results.environment()}, "starts": rows, "summary": summarize(rows)}
    (run_dir / "startup.md").write_text(table(data["summary"]) + "\n")
    results.write(run_dir, "startup.json", data, latest=False)
    print(table(data["summary"]))
    print(f"\nrecorded {run_dir / 'startup.json'}")
    return data


def main(args: argparse.Namespace) -> int:
    """``repro startup``: record one vLLM start of scripts/startup.sh, or --report the run."""
    if args.report:
        report(args.run_dir)
        return 0
    record(args.run_dir, args.configuration, args.log, args.started, args.ready, args.warmed, args.tokens)
    return 0
