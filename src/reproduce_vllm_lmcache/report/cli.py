"""``repro`` commands of the report layer: tables, history, compare, HTML reports."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.servers.settings import KnobError


def cmd_table(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.report import judging

    data = json.loads(args.file.read_text())
    print(judging.table(data["rounds"]))
    print("\n".join(judging.verdict_lines(data["verdicts"])))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    """Markdown table of every recorded cold/warm run (results/runs/*/run.json)."""
    from reproduce_vllm_lmcache.report import judging

    runs_dir = knobs.path("REPRO_RESULTS_DIR") / "runs"
    runs = [(p.parent.name, json.loads(p.read_text())) for p in sorted(runs_dir.glob("*/run.json"))]
    print(judging.history(runs))
    return 0


def cmd_account(args: argparse.Namespace) -> int:
    """Where each warm request of a run folder spent its time (run.json + logs/lmcache.log)."""
    from reproduce_vllm_lmcache.report import account

    data = json.loads((args.run_dir / "run.json").read_text())
    log = args.run_dir / "logs" / "lmcache.log"
    items = account.accounts(data["rounds"], log.read_text(errors="replace") if log.exists() else "")
    if not items:
        raise KnobError(f"{args.run_dir}: no warm round with vLLM's per-request metrics")
    print("seconds; queue = lookup + retrieve + hand-offs (retrieve stages need LMCACHE_LOG_LEVEL=DEBUG)")
    print(account.table(items))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.report import compare

    if args.a and args.b:
        a, b = args.a, args.b
    elif args.a or args.b:
        raise KnobError("give both results to compare, or neither (the latest two)")
    else:
        a, b = compare.latest_two(knobs.path("REPRO_RESULTS_DIR") / "runs", args.label)
    _, text = compare.run(a, b)
    print(text)
    return 0


def cmd_bench_summary(args: argparse.Namespace) -> int:
    """One line per phase of an `lmcache bench server` JSON; fails below 100 % checksum pass."""
    m = json.loads(args.file.read_text())["metrics"]
    res = m["results"]
    print(
        f"server bench ({m['config']['transfer_mode']}, {m['config']['num_tokens']} tokens): "
        f"{res['checksum_ok']}/{res['total_requests']} checksums OK ({res['pass_rate']:g} %)"
    )
    for phase in ("cold_lookup", "cold_store", "warm_lookup", "warm_retrieve"):
        if phase in m:
            print(f"  {phase:14s} mean {m[phase][phase + '_mean']:8.2f} ms  p50 {m[phase][phase + '_p50']:8.2f} ms")
    print(f"recorded {args.file}")
    return 0 if res["pass_rate"] == 100.0 and res["total_requests"] > 0 else 1


def cmd_report(args: argparse.Namespace) -> int:
    """report.html of run folders, and results/index.html."""
    from reproduce_vllm_lmcache.report import html

    results_dir = knobs.path("REPRO_RESULTS_DIR")
    folders = sorted(p for p in (results_dir / "runs").iterdir() if p.is_dir()) if args.all else args.run_dirs
    for run_dir in folders:
        if not run_dir.is_dir():
            raise FileNotFoundError(f"no run folder {run_dir}")
        print(f"wrote {html.write_run_report(run_dir)}")
    if (results_dir / "runs").is_dir():
        print(f"wrote {html.write_index(results_dir)}")
    return 0


def cmd_workload_report(args: argparse.Namespace) -> int:
    """A workload run folder: workload.json, workload.md (the tables), plots; exit 1 on a failed check."""
    from reproduce_vllm_lmcache.report import plots, results, workloads

    summary = workloads.summarize(args.run_dir)
    capacity = summary["rows"][0]["capacity_tokens"]
    images = plots.workload(summary["rows"], summary["floor_s"], capacity, args.run_dir)
    summary["config"] = {"knobs": knobs.resolved(), **results.environment()}
    path = results.write(args.run_dir, "workload.json", summary, latest=False)
    text = workloads.lines(summary)
    (args.run_dir / "workload.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))
    print(f"recorded {path}, workload.md and {', '.join(p.name for p in images)}")
    return 0 if summary["passed"] else 1


def register(sub: Any) -> None:
    p = sub.add_parser("workload-report", help="tables, targets, checks and plots of a workload run folder")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=cmd_workload_report)
    p = sub.add_parser("table", help="print the table of a recorded run.json")
    p.add_argument("file", type=Path, nargs="?", default=knobs.path("REPRO_RESULTS_DIR") / "latest.json")
    p.set_defaults(func=cmd_table)
    sub.add_parser("history", help="markdown table of every recorded run").set_defaults(func=cmd_history)
    p = sub.add_parser("account", help="where each warm request of a run folder spent its time, stage by stage")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=cmd_account)
    p = sub.add_parser("compare", help="B against A per round / point, with a noise verdict (default: latest two)")
    p.add_argument("a", type=Path, nargs="?")
    p.add_argument("b", type=Path, nargs="?")
    p.add_argument("--label", help="only runs whose folder ends in -LABEL (e.g. dev, run, bench)")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("bench-summary", help="summarise an `lmcache bench server` JSON (exit 1 below 100 %% pass)")
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_bench_summary)
    p = sub.add_parser("report", help="write report.html of run folders and results/index.html")
    p.add_argument("run_dirs", type=Path, nargs="*", help="run folders (default: none, only the index)")
    p.add_argument("--all", action="store_true", help="every folder under results/runs")
    p.set_defaults(func=cmd_report)
