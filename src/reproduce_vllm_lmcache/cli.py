"""``repro``: the workspace's command line (client, knobs, server command lines)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import config, tiers_cli
from .settings import KnobError, ServerDown


def cmd_config(args: argparse.Namespace) -> int:
    from .settings import Settings

    settings = Settings.from_env()
    print(json.dumps({"knobs": config.resolved(), "resolved": settings.as_dict()}, indent=2))
    return 0


def cmd_command(args: argparse.Namespace) -> int:
    """NUL-separated argv, for bash to run without any quoting issues."""
    from .settings import Settings

    settings = Settings.from_env()
    if args.server == "preload":
        argv = settings.preload_argv(config.get("REPRO_PRELOAD_SOCKET"))
    else:
        argv = {"lmcache": settings.lmcache_argv, "vllm": settings.vllm_argv, "redis": settings.redis_argv}[args.server]()
    sys.stdout.write("\0".join(argv) + "\0")
    return 0


def cmd_url(args: argparse.Namespace) -> int:
    from .settings import Settings

    settings = Settings.from_env()
    print({"lmcache": settings.lmcache_http_url, "vllm": settings.vllm_url, "redis": settings.redis_url}[args.server])
    return 0


def cmd_preflight(args: argparse.Namespace) -> int:
    from .preflight import check_ports, ports_for
    from .settings import Settings

    from .guards import check_memory

    settings = Settings.from_env()
    check_ports(args.server, settings)
    if args.server == "redis":
        from .preflight import check_redis_binary

        print(f"redis: {check_redis_binary(settings)} on {settings.redis_url}, folder {settings.redis_dir}")
        return 0
    if args.server == "vllm":
        from .preflight import remove_stale_segments

        for line in remove_stale_segments():
            print(f"vllm: {line}")
    memory = check_memory(settings, args.server, float(config.get("REPRO_MEMORY_HEADROOM_GB")))
    shown = {k: v for k, v in settings.as_dict().items() if k not in ("prompt_tokens", "max_tokens")}
    if args.server == "lmcache":
        keys = ("host", "lmcache_port", "lmcache_http_port", "l1_size_gb", "eviction_policy", "chunk_size", "transfer_mode", "lmcache_telemetry", "l2", "lmcache_extra_args")
        shown = {k: shown[k] for k in keys}
    print(f"{args.server} knobs: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    if args.server == "vllm" and settings.vllm_layout_note:
        print(f"vllm: {settings.vllm_layout_note}")
    print(f"{args.server} ports free: " + ", ".join(str(p) for p in ports_for(args.server, settings).values()))
    print(f"{args.server} {memory}")
    return 0


def cmd_guard(args: argparse.Namespace) -> int:
    """Before vLLM starts against a running LMCache: the KV namespace guard."""
    from .guards import check_namespace
    from .settings import Settings

    settings = Settings.from_env()
    if not settings.connector:
        print("vllm: no connector, LMCache not used")
        return 0
    print("vllm: " + check_namespace(settings, config.get("REPRO_NAMESPACE_GUARD")))
    return 0


def cmd_e2e(args: argparse.Namespace) -> int:
    from . import client, report, results
    from .settings import Settings

    settings = Settings.from_env()
    run_dir = args.run_dir or results.new_run_dir(args.label)
    run_dir.mkdir(parents=True, exist_ok=True)
    nonce = args.seed or f"{time.time_ns()}"
    print(f"e2e: vLLM {settings.vllm_url}, LMCache {settings.lmcache_http_url}, prompts {list(settings.prompt_tokens)} tokens")
    session = client.Session(settings)
    try:
        session.warmup()
        rounds = []
        for length in settings.prompt_tokens:
            label = f"p{length}"
            for repeat in range(args.repeats):
                # Each repeat a prompt of its own, so that every first round is cold.
                ids = session.prompt(length, seed=f"{nonce}-{label}" + (f"-r{repeat}" if repeat else ""))
                rounds += [session.round(name, label, ids, float(config.get("REPRO_REQUEST_TIMEOUT"))) for name in args.rounds.split(",")]
    finally:
        session.close()
    for r in rounds:
        r.configuration = args.configuration
    round_dicts = [r.as_dict() for r in rounds]
    verdicts = report.verdicts(round_dicts, float(config.get("REPRO_TIE_TOLERANCE")))
    data = {
        "config": {
            "knobs": config.resolved(),
            **settings.as_dict(),
            "served_model": session.model,
            "prompt_seed": nonce,
            **results.environment(),
        },
        "rounds": round_dicts,
        "verdicts": verdicts,
    }
    path = results.write(run_dir, args.output, data, latest=args.output == "run.json")
    print()
    print(report.table(round_dicts))
    if not verdicts:
        print(f"\nrecorded {path}")
        return 0
    print()
    # With vLLM's own prefix cache on, a warm request is served by it, not by LMCache.
    lmcache_judged = settings.connector and not settings.prefix_caching
    print("\n".join(report.verdict_lines(verdicts, lmcache=lmcache_judged)))
    print(f"\nrecorded {path}" + (" (and results/latest.json)" if args.output == "run.json" else ""))
    ok = report.passed(verdicts) if lmcache_judged else all(report.same_answer(v) for v in verdicts)
    return 0 if ok else 1


def cmd_warmup(args: argparse.Namespace) -> int:
    """Before a start script reports vLLM ready: the first request's one-off work."""
    from . import client
    from .settings import Settings

    session = client.Session(Settings.from_env())
    try:
        print(f"vllm: warm-up request (logprobs, below one LMCache chunk) took {session.prime():.1f} s")
    finally:
        session.close()
    return 0


def cmd_startup(args: argparse.Namespace) -> int:
    from . import startup

    if args.report:
        startup.report(args.run_dir)
        return 0
    startup.record(args.run_dir, args.configuration, args.log, args.started, args.ready, args.warmed, args.tokens)
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    from . import client, scenarios
    from .settings import Settings

    settings = Settings.from_env()
    session = client.Session(settings)
    try:
        found = scenarios.run_all(session, args.seed, float(config.get("REPRO_REQUEST_TIMEOUT")))
    finally:
        session.close()
    args.output.write_text(json.dumps({"scenarios": found}, indent=2) + "\n")
    return 0 if all(s["passed"] for s in found) else 1


def cmd_matrix_report(args: argparse.Namespace) -> int:
    from . import matrix, results

    run_dir: Path = args.run_dir
    base, rounds = matrix.load_rounds(run_dir)
    tolerance = float(config.get("REPRO_TIE_TOLERANCE"))
    verdicts = matrix.verdicts(rounds, tolerance, run_dir / "logs")
    scenario_list = [s for p in sorted(run_dir.glob("scenarios-*.json")) for s in json.loads(p.read_text())["scenarios"]]
    configs = list(dict.fromkeys(r["configuration"] for r in rounds))
    transfers = matrix.transfer_checks(configs, run_dir / "logs")
    data = {"config": base, "rounds": rounds, "verdicts": verdicts, "scenarios": scenario_list, "transfer_modes": transfers}
    path = results.write(run_dir, "matrix.json", data, latest=False)
    print(matrix.table(rounds, verdicts))
    failures = [v for v in verdicts if not v.get("source_ok", True) or not (v["identical_to_baseline"] or v["diverged_at_tie"])]
    for v in verdicts:
        if "source_ok" in v:
            print(f"{'PASS' if v['source_ok'] else 'FAIL'} {v['configuration']} {v['prompt']} {v['round']}: hit from {v['hit_source']} (expected {v['expected_source']})")
    for t in transfers:
        want = "engine_driven" if "engine" in t["configuration"] else "lmcache_driven"
        ok = t["transfer_mode"] == want
        failures += [] if ok else [t]
        print(f"{'PASS' if ok else 'FAIL'} {t['configuration']}: vLLM log says mode={t['transfer_mode']} (data path {t['data_path'] or 'n/a'})")
    failures += [s for s in scenario_list if not s["passed"]]
    for s in scenario_list:
        print(f"{'PASS' if s['passed'] else 'FAIL'} scenario {s['scenario']}: {s['detail']}")
    same = sum(1 for v in verdicts if v["identical_to_baseline"])
    print(f"{same} of {len(verdicts)} rounds token-identical to the no-cache baseline")
    print(f"recorded {path}")
    return 1 if failures else 0


def cmd_table(args: argparse.Namespace) -> int:
    from . import report

    data = json.loads(args.file.read_text())
    print(report.table(data["rounds"]))
    print("\n".join(report.verdict_lines(data["verdicts"])))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    """Markdown table of every recorded cold/warm run (results/runs/*/run.json)."""
    from . import report

    runs_dir = config.path("REPRO_RESULTS_DIR") / "runs"
    runs = [(p.parent.name, json.loads(p.read_text())) for p in sorted(runs_dir.glob("*/run.json"))]
    print(report.history(runs))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """One configuration of the sweep, against the running servers: points-<configuration>.json."""
    from . import bench, results
    from .settings import Settings

    settings = Settings.from_env()
    try:
        lengths = config.int_list("REPRO_BENCH_PROMPT_TOKENS")
    except ValueError as exc:
        raise KnobError(str(exc)) from None
    too_long = [n for n in lengths if n + settings.max_tokens > settings.max_model_len]
    if too_long:
        raise KnobError(f"REPRO_BENCH_PROMPT_TOKENS {too_long} do not fit REPRO_MAX_MODEL_LEN={settings.max_model_len}")
    repeats = int(config.get("REPRO_BENCH_REPEATS"))
    print(f"bench {args.configuration}: prompts {lengths} tokens, {repeats} repeats, chunk size {settings.chunk_size}")
    found = bench.measure(settings, lengths, repeats, args.lmcache_log, float(config.get("REPRO_REQUEST_TIMEOUT")))
    found.update(
        configuration=args.configuration,
        vllm_ready_s=args.vllm_ready_s,
        config={"knobs": config.resolved(), **settings.as_dict(), **results.environment()},
    )
    path = args.run_dir / f"points-{args.configuration}.json"
    path.write_text(json.dumps(found, indent=2) + "\n")
    print(f"recorded {path}")
    return 0


def cmd_bench_report(args: argparse.Namespace) -> int:
    from . import bench, plots, results

    data, path = bench.report(args.run_dir)
    results.write(args.run_dir, path.name, data, latest=False)
    plots.ttft(data["points"], args.run_dir / "bench-ttft.png")
    plots.ratios(data["points"], args.run_dir / "bench-ratios.png")
    print(bench.table(data["points"]))
    print()
    print("where a warm request's time goes (medians, seconds):")
    print(bench.breakdown_table(data["points"]))
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


def cmd_engine_bench_report(args: argparse.Namespace) -> int:
    """The `lmcache bench engine` summaries of a run folder, side by side, into engine_bench.json."""
    from . import results

    summaries = {}
    for path in sorted(args.run_dir.glob("*/bench_summary.json")):
        summaries[path.parent.name] = json.loads(path.read_text())["results"]
    if not summaries:
        raise FileNotFoundError(f"no */bench_summary.json in {args.run_dir}")
    fields = ("successful_requests", "failed_requests", "mean_ttft_ms", "p50_ttft_ms", "p90_ttft_ms", "mean_request_latency_ms", "input_throughput")
    print(f"| workload, configuration | {' | '.join(fields)} |")
    print("|---|" + "---:|" * len(fields))
    for name, res in summaries.items():
        print(f"| {name} | " + " | ".join(f"{res[f]:.1f}" if isinstance(res[f], float) else str(res[f]) for f in fields) + " |")
    path = results.write(args.run_dir, "engine_bench.json", {"summaries": summaries}, latest=False)
    print(f"recorded {path}")
    return 0 if all(r["failed_requests"] == 0 and r["successful_requests"] > 0 for r in summaries.values()) else 1


def cmd_compare(args: argparse.Namespace) -> int:
    from . import compare

    if args.a and args.b:
        a, b = args.a, args.b
    elif args.a or args.b:
        raise KnobError("give both results to compare, or neither (the latest two)")
    else:
        a, b = compare.latest_two(config.path("REPRO_RESULTS_DIR") / "runs", args.label)
    _, text = compare.run(a, b)
    print(text)
    return 0


def cmd_fingerprint(args: argparse.Namespace) -> int:
    """HEAD and edits of a checkout, as one line (changes whenever its code changes). For
    LMCache, the server's code: lmcache/integration/ (the connector) runs inside vLLM."""
    from . import results

    exclude = ("lmcache/integration",) if args.checkout == "LMCache" else ()
    state = results.checkout_state(config.ROOT / args.checkout, exclude)
    print(f"{state['head']} {state['edits_sha256'] or 'clean'}")
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


def main(argv: list[str] | None = None) -> int:
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="repro", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("config", help="print every knob and the resolved settings").set_defaults(func=cmd_config)
    for name, func, text in (
        ("command", cmd_command, "print a server's command line (NUL-separated)"),
        ("url", cmd_url, "print a server's HTTP base URL"),
        ("preflight", cmd_preflight, "validate knobs and ports before starting a server"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("server", choices=("lmcache", "vllm", "redis", "preload") if name == "command" else ("lmcache", "vllm", "redis"))
        p.set_defaults(func=func)
    sub.add_parser("guard", help="KV namespace guard before vLLM starts (needs LMCache up)").set_defaults(func=cmd_guard)
    sub.add_parser("warmup", help="one short request that does a fresh vLLM's one-off work").set_defaults(func=cmd_warmup)
    p = sub.add_parser("e2e", help="cold then warm requests per prompt length, proven by metrics")
    p.add_argument("--label", default="e2e", help="suffix of the run folder (default: e2e)")
    p.add_argument("--run-dir", type=Path, help="record into this folder instead of a new one")
    p.add_argument("--seed", help="prompt seed (default: a fresh one, so the first round is cold)")
    p.add_argument("--rounds", default="cold,warm", help="round names per prompt, same prompt each (default: cold,warm)")
    p.add_argument("--configuration", default="", help="configuration name recorded with each round")
    p.add_argument("--output", default="run.json", help="file name in the run folder (only run.json updates latest.json)")
    p.add_argument("--repeats", type=int, default=1, help="fresh prompts per length, each sent cold then warm (default: 1)")
    p.set_defaults(func=cmd_e2e)
    p = sub.add_parser("startup", help="record one vLLM start of scripts/startup.sh (or --report the run)")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--report", action="store_true", help="merge the run's starts into startup.json and print the table")
    p.add_argument("--configuration", default="")
    p.add_argument("--log", type=Path, help="the vLLM log of this start")
    for name in ("started", "ready", "warmed"):
        p.add_argument(f"--{name}", type=float, help=f"epoch seconds: {name}")
    p.add_argument("--tokens", type=int, default=640, help="prompt length of the two first requests")
    p.set_defaults(func=cmd_startup)
    p = sub.add_parser("bench", help="one configuration of the bench sweep against the running servers")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--configuration", required=True, help="name of this configuration, e.g. chunk256 or no-lmcache")
    p.add_argument("--lmcache-log", type=Path, help="the LMCache server's log (for the retrieve times)")
    p.add_argument("--vllm-ready-s", type=float, help="seconds vLLM took to become ready (recorded)")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("bench-report", help="merge a bench run folder into bench.json, plots and tables")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=cmd_bench_report)
    p = sub.add_parser("engine-bench-report", help="the `lmcache bench engine` summaries of a run folder")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=cmd_engine_bench_report)
    p = sub.add_parser("compare", help="B against A per round / point, with a noise verdict (default: latest two)")
    p.add_argument("a", type=Path, nargs="?")
    p.add_argument("b", type=Path, nargs="?")
    p.add_argument("--label", help="only runs whose folder ends in -LABEL (e.g. dev, run, bench)")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("fingerprint", help="one line that changes whenever a checkout's code changes")
    p.add_argument("checkout", choices=("LMCache", "vllm"))
    p.set_defaults(func=cmd_fingerprint)
    p = sub.add_parser("scenarios", help="negative, partial-prefix and multi-turn chat scenarios")
    p.add_argument("--seed", required=True, help="the seed of the cold/warm rounds run before")
    p.add_argument("--output", type=Path, required=True)
    p.set_defaults(func=cmd_scenarios)
    p = sub.add_parser("matrix-report", help="merge a matrix run folder into matrix.json and print its table")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=cmd_matrix_report)
    p = sub.add_parser("table", help="print the table of a recorded run.json")
    p.add_argument("file", type=Path, nargs="?", default=config.path("REPRO_RESULTS_DIR") / "latest.json")
    p.set_defaults(func=cmd_table)
    sub.add_parser("history", help="markdown table of every recorded run").set_defaults(func=cmd_history)
    p = sub.add_parser("bench-summary", help="summarise an `lmcache bench server` JSON (exit 1 below 100 %% pass)")
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_bench_summary)
    tiers_cli.register(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (KnobError, ServerDown, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # httpx is imported only by the commands that talk to a server (it costs 0.6 s).
        httpx = sys.modules.get("httpx")
        if httpx is None or not isinstance(exc, httpx.HTTPError):
            raise
        print(f"error: request failed: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
