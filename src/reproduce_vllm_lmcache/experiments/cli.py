"""``repro`` commands of the experiments layer: rounds, scenarios, sweeps, tiers, traces."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reproduce_vllm_lmcache import config
from reproduce_vllm_lmcache.servers.settings import KnobError


def cmd_e2e(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.experiments import client
    from reproduce_vllm_lmcache.report import judging, results
    from reproduce_vllm_lmcache.servers.settings import Settings

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
    verdicts = judging.verdicts(round_dicts, float(config.get("REPRO_TIE_TOLERANCE")))
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
    print(judging.table(round_dicts))
    if not verdicts:
        print(f"\nrecorded {path}")
        return 0
    print()
    # With vLLM's own prefix cache on, a warm request is served by it, not by LMCache.
    lmcache_judged = settings.connector and not settings.prefix_caching
    print("\n".join(judging.verdict_lines(verdicts, lmcache=lmcache_judged)))
    print(f"\nrecorded {path}" + (" (and results/latest.json)" if args.output == "run.json" else ""))
    ok = judging.passed(verdicts) if lmcache_judged else all(judging.same_answer(v) for v in verdicts)
    return 0 if ok else 1


def cmd_warmup(args: argparse.Namespace) -> int:
    """Before a start script reports vLLM ready: the first request's one-off work."""
    from reproduce_vllm_lmcache.experiments import client
    from reproduce_vllm_lmcache.servers.settings import Settings

    session = client.Session(Settings.from_env())
    try:
        print(f"vllm: warm-up request (logprobs, below one LMCache chunk) took {session.prime():.1f} s")
    finally:
        session.close()
    return 0


def cmd_startup(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.experiments import startup

    if args.report:
        startup.report(args.run_dir)
        return 0
    startup.record(args.run_dir, args.configuration, args.log, args.started, args.ready, args.warmed, args.tokens)
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.experiments import client, scenarios
    from reproduce_vllm_lmcache.servers.settings import Settings

    settings = Settings.from_env()
    session = client.Session(settings)
    try:
        found = scenarios.run_all(session, args.seed, float(config.get("REPRO_REQUEST_TIMEOUT")))
    finally:
        session.close()
    args.output.write_text(json.dumps({"scenarios": found}, indent=2) + "\n")
    return 0 if all(s["passed"] for s in found) else 1


def cmd_matrix_report(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.experiments import matrix
    from reproduce_vllm_lmcache.report import results

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
            print(
                f"{'PASS' if v['source_ok'] else 'FAIL'} {v['configuration']} {v['prompt']} {v['round']}: hit from {v['hit_source']} (expected {v['expected_source']})"
            )
    for t in transfers:
        want = "engine_driven" if "engine" in t["configuration"] else "lmcache_driven"
        ok = t["transfer_mode"] == want
        failures += [] if ok else [t]
        print(
            f"{'PASS' if ok else 'FAIL'} {t['configuration']}: vLLM log says mode={t['transfer_mode']} (data path {t['data_path'] or 'n/a'})"
        )
    failures += [s for s in scenario_list if not s["passed"]]
    for s in scenario_list:
        print(f"{'PASS' if s['passed'] else 'FAIL'} scenario {s['scenario']}: {s['detail']}")
    same = sum(1 for v in verdicts if v["identical_to_baseline"])
    print(f"{same} of {len(verdicts)} rounds token-identical to the no-cache baseline")
    print(f"recorded {path}")
    return 1 if failures else 0


def cmd_bench(args: argparse.Namespace) -> int:
    """One configuration of the sweep, against the running servers: points-<configuration>.json."""
    from reproduce_vllm_lmcache.experiments import bench
    from reproduce_vllm_lmcache.report import results
    from reproduce_vllm_lmcache.servers.settings import Settings

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
    path.write_text(results.relative(json.dumps(found, indent=2)) + "\n")
    print(f"recorded {path}")
    return 0


def cmd_bench_report(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.experiments import bench
    from reproduce_vllm_lmcache.report import plots, results

    data, path = bench.report(args.run_dir)
    plots.ttft(data["points"], args.run_dir / "bench-ttft.png")
    plots.ratios(data["points"], args.run_dir / "bench-ratios.png")
    results.write(args.run_dir, path.name, data, latest=False)
    print(f"LMCache code: REPRO_PATCHES={data['config'].get('patches', 'all')} (docs/setup.md)")
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


def _record(run_dir: Path | None, name: str, result: dict[str, Any], settings_dict: dict[str, Any]) -> int:
    from reproduce_vllm_lmcache.report import results

    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        data = {"config": {"knobs": config.resolved(), **settings_dict, **results.environment()}, **result}
        print(f"recorded {results.write(run_dir, name, data, latest=False)}")
    return 0 if result["passed"] else 1


def _with_session(run: Callable[[Any], dict[str, Any]], run_dir: Path | None, name: str) -> int:
    from reproduce_vllm_lmcache.experiments.client import Session
    from reproduce_vllm_lmcache.servers.settings import Settings

    settings = Settings.from_env()
    session = Session(settings)
    try:
        result = run(session)
    finally:
        session.close()
    return _record(run_dir, name, result, settings.as_dict())


def cmd_l2(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.experiments import l2
    from reproduce_vllm_lmcache.servers.settings import KnobError, Settings

    settings = Settings.from_env()
    if settings.l2 == "none":
        raise KnobError("REPRO_L2=none: the L2 scenario needs REPRO_L2=redis or disk (scripts/l2.sh sets it)")
    tokens = int(config.get("REPRO_L2_PROMPT_TOKENS"))
    timeout = float(config.get("REPRO_REQUEST_TIMEOUT"))
    seed = f"l2-{settings.l2}-{time.time_ns()}"
    return _with_session(lambda s: l2.run(s, tokens, seed, timeout), args.run_dir, f"l2-{settings.l2}.json")


def cmd_eviction(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.experiments import eviction
    from reproduce_vllm_lmcache.servers.settings import KnobError, Settings

    policy = Settings.from_env().eviction_policy
    tokens = int(config.get("REPRO_EVICTION_PROMPT_TOKENS"))
    prompts = int(config.get("REPRO_EVICTION_PROMPTS"))
    if prompts < 5:
        raise KnobError(f"REPRO_EVICTION_PROMPTS={prompts}: the stream needs at least 5 prompts (P1..P4, P1 again, P5)")
    timeout = float(config.get("REPRO_REQUEST_TIMEOUT"))
    seed = f"evict-{time.time_ns()}"
    return _with_session(lambda s: eviction.run(s, policy, tokens, prompts, seed, timeout), args.run_dir, f"eviction-{policy}.json")


def cmd_shared(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.experiments import shared

    tokens = int(config.get("REPRO_SHARED_PROMPT_TOKENS"))
    timeout = float(config.get("REPRO_REQUEST_TIMEOUT"))
    port = int(config.get("REPRO_SECOND_VLLM_PORT"))

    def run(first: Any) -> dict[str, Any]:
        second = shared.second_session(first, port)
        try:
            return shared.run(first, second, tokens, f"shared-{time.time_ns()}", timeout)
        finally:
            second.close()

    return _with_session(run, args.run_dir, "shared.json")


def cmd_profile_report(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.experiments import profile

    found = sorted(args.run_dir.glob("*.pyspy.txt"))
    if not found:
        raise FileNotFoundError(f"no *.pyspy.txt in {args.run_dir}")
    for path in found:
        print(f"=== {path.name.split('.')[0]} ({path})")
        print(profile.report(profile.summarize(path.read_text().splitlines())))
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    """One cold and one warm request drawn across both servers (or a recorded trace redrawn)."""
    from reproduce_vllm_lmcache.experiments import client, floor, trace
    from reproduce_vllm_lmcache.report import results, timeline
    from reproduce_vllm_lmcache.servers.settings import Settings

    if args.recorded:
        paths = sorted(args.recorded.glob("trace-*.json"))
        if not paths:
            raise FileNotFoundError(f"no trace-*.json in {args.recorded}")
        for path in paths:
            data = json.loads(path.read_text())
            sources = {k: config.ROOT / v if v else None for k, v in data["sources"].items()}
            if sources["vllm_log"] and sources["vllm_log"].is_file():  # the logs are still there: read them again
                events = trace.collect(
                    data["rounds"],
                    sources["vllm_log"],
                    sources["lmcache_log"],
                    sources["lmcache_trace"],
                    data["transfer_mode"],
                    data["kv_bytes_per_token"],
                    data["chunk_size"],
                )
                data["events"] = [e.as_dict() for e in events]
            timeline.draw(data["events"], data["origins"], data["title"], path.with_suffix(".png"))
            results.write(path.parent, path.name, data, latest=False)
            print(timeline.summary(data["events"], data["origins"]))
            print(f"drew {path.with_suffix('.png')}")
        return 0
    settings = Settings.from_env()
    logs = config.path("REPRO_LOG_DIR")
    vllm_log, lmcache_log = args.vllm_log or logs / "vllm.log", args.lmcache_log or logs / "lmcache.log"
    storage = args.lmcache_trace or logs / "lmcache-trace.lct"
    run_dir = args.run_dir or results.new_run_dir("trace")
    run_dir.mkdir(parents=True, exist_ok=True)
    tokens = args.tokens or int(config.get("REPRO_TRACE_PROMPT_TOKENS"))
    session = client.Session(settings)
    try:
        rounds = trace.run(session, tokens, f"trace-{time.time_ns()}", float(config.get("REPRO_REQUEST_TIMEOUT")))
    finally:
        session.close()
    kv_bytes = floor.kv_bytes_per_token(floor.model_config(settings.model), settings.dtype)
    events = trace.collect(rounds, vllm_log, lmcache_log, storage, settings.transfer_mode, kv_bytes, settings.chunk_size)
    if not any(e.source not in ("client", "vllm metrics") for e in events):
        raise FileNotFoundError(
            f"no trace events: nothing in {vllm_log} or {lmcache_log} falls in the requests' windows; "
            "start both servers with REPRO_TRACE=1 (scripts/trace.sh does)"
        )
    name = f"trace-{settings.transfer_mode}"
    title = f"{tokens}-token prompt, {settings.transfer_mode}, chunk {settings.chunk_size}"
    origins = {r["name"]: r["sent_at"] for r in rounds}
    data = {
        "title": title,
        "transfer_mode": settings.transfer_mode,
        "prompt_tokens": tokens,
        "origins": origins,
        "kv_bytes_per_token": kv_bytes,
        "chunk_size": settings.chunk_size,
        "sources": {
            "vllm_log": str(vllm_log),
            "lmcache_log": str(lmcache_log),
            "lmcache_trace": str(storage) if storage.is_file() else None,
        },
        "config": {"knobs": config.resolved(), **settings.as_dict(), **results.environment()},
        "rounds": rounds,
        "events": [e.as_dict() for e in events],
    }
    timeline.draw(data["events"], origins, title, run_dir / f"{name}.png")
    path = results.write(run_dir, f"{name}.json", data, latest=False)
    print(timeline.summary(data["events"], origins))
    print(f"recorded {path} and {name}.png")
    return 0


def cmd_bad_input(args: argparse.Namespace) -> int:
    """The bad-input suite against the running servers; exit 1 when a server stopped serving."""
    from reproduce_vllm_lmcache.experiments import bad_input
    from reproduce_vllm_lmcache.servers.settings import Settings

    settings = Settings.from_env()
    targets = ("vllm", "lmcache") if args.target == "both" else (args.target,)
    print(f"bad input to {', '.join(targets)} on {settings.host} (every case, then a real request and the health endpoint)")
    outcomes = bad_input.run(settings, targets)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([o.as_dict() for o in outcomes], indent=1) + "\n")
    failed = [o for o in outcomes if not o.ok]
    print(f"{len(outcomes) - len(failed)}/{len(outcomes)} cases ok" + (f"; not ok: {', '.join(o.case for o in failed)}" if failed else ""))
    return 1 if failed else 0


def cmd_nodes(args: argparse.Namespace) -> int:
    """One phase of scripts/nodes.sh against nodes it started (each maybe in its own namespace)."""
    from reproduce_vllm_lmcache.experiments import nodes
    from reproduce_vllm_lmcache.report import results

    timeout = float(config.get("REPRO_REQUEST_TIMEOUT"))
    specs = [nodes.NodeSpec.parse(text) for text in args.node]
    opened = [nodes.Node(spec) for spec in specs]
    try:
        if args.phase == "share":
            a, b = opened
            part = nodes.share(a, b, nodes.prompt_tokens(), nodes.seed(), timeout, args.coordinator)
            results.write(args.run_dir, "nodes-share.json", part, latest=False)
            return 0
        first = nodes.load(args.run_dir / "nodes-share.json")
        part = nodes.after_restart(opened[0], first, timeout, args.coordinator)
        summary = nodes.summary(first, part, {"mode": args.topology, "nodes": [vars(s) for s in specs]})
        return _record(args.run_dir, "nodes.json", summary, opened[0].session.settings.as_dict())
    finally:
        for node in opened:
            node.close()


def register(sub: Any) -> None:
    from reproduce_vllm_lmcache.experiments import workload

    _register_soak(sub)
    workload.register(sub)
    p = sub.add_parser("e2e", help="cold then warm requests per prompt length, proven by metrics")
    p.add_argument("--label", default="e2e", help="suffix of the run folder (default: e2e)")
    p.add_argument("--run-dir", type=Path, help="record into this folder instead of a new one")
    p.add_argument("--seed", help="prompt seed (default: a fresh one, so the first round is cold)")
    p.add_argument("--rounds", default="cold,warm", help="round names per prompt, same prompt each (default: cold,warm)")
    p.add_argument("--configuration", default="", help="configuration name recorded with each round")
    p.add_argument("--output", default="run.json", help="file name in the run folder (only run.json updates latest.json)")
    p.add_argument("--repeats", type=int, default=1, help="fresh prompts per length, each sent cold then warm (default: 1)")
    p.set_defaults(func=cmd_e2e)
    p = sub.add_parser("bad-input", help="malformed ZMQ frames, bad/oversized/truncated HTTP requests to the running servers")
    p.add_argument("--target", choices=("vllm", "lmcache", "both"), default="both")
    p.add_argument("--json", type=Path, help="write the outcomes here")
    p.set_defaults(func=cmd_bad_input)
    sub.add_parser("warmup", help="one short request that does a fresh vLLM's one-off work").set_defaults(func=cmd_warmup)
    p = sub.add_parser("trace", help="one cold and one warm request drawn across both servers (REPRO_TRACE=1 servers)")
    p.add_argument("--run-dir", type=Path, help="record into this folder (default: a new results/runs/<UTC>-trace)")
    p.add_argument("--tokens", type=int, help="prompt length (default: REPRO_TRACE_PROMPT_TOKENS)")
    p.add_argument("--vllm-log", type=Path, help="vLLM's log (default: REPRO_LOG_DIR/vllm.log)")
    p.add_argument("--lmcache-log", type=Path, help="LMCache's log (default: REPRO_LOG_DIR/lmcache.log)")
    p.add_argument("--lmcache-trace", type=Path, help="LMCache's storage trace (default: REPRO_LOG_DIR/lmcache-trace.lct)")
    p.add_argument("--from", dest="recorded", type=Path, help="redraw the trace-*.json of a recorded run folder")
    p.set_defaults(func=cmd_trace)
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
    p = sub.add_parser("scenarios", help="negative, partial-prefix and multi-turn chat scenarios")
    p.add_argument("--seed", required=True, help="the seed of the cold/warm rounds run before")
    p.add_argument("--output", type=Path, required=True)
    p.set_defaults(func=cmd_scenarios)
    p = sub.add_parser("matrix-report", help="merge a matrix run folder into matrix.json and print its table")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=cmd_matrix_report)
    for name, func, text in (
        ("l2", cmd_l2, "store a prompt in L1 and L2, clear L1, serve the warm request from L2 (REPRO_L2)"),
        ("eviction", cmd_eviction, "a prompt stream through a small L1: hits predicted by the policy vs observed"),
        ("shared", cmd_shared, "a prompt prefilled on one vLLM instance is a hit on the second"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--run-dir", type=Path, help="record the result as JSON into this folder")
        p.set_defaults(func=func)
    p = sub.add_parser("profile-report", help="top functions of the py-spy profiles in a run folder")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=cmd_profile_report)
    p = sub.add_parser("nodes", help="one phase of scripts/nodes.sh: share (A to B and back through the store) or restart")
    p.add_argument("phase", choices=("share", "restart"))
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--node", action="append", required=True, help="NAME,NETNS|-,LMCACHE_PORT,LMCACHE_HTTP_PORT,VLLM_PORT")
    p.add_argument("--coordinator", required=True, help="the coordinator's URL, as the nodes reach it")
    p.add_argument("--topology", default="", help="how the nodes are connected (recorded)")
    p.set_defaults(func=cmd_nodes)


# --- soak (scripts/soak.sh, scripts/observe.sh) ------------------------------------------------


def _soak_bounds() -> Any:
    from reproduce_vllm_lmcache.experiments.soak import Bounds

    return Bounds(
        warmup_s=float(config.get("REPRO_SOAK_WARMUP_S")),
        recovery_s=float(config.get("REPRO_SOAK_RECOVERY_S")),
        rss_growth_mb=float(config.get("REPRO_SOAK_RSS_GROWTH_MB")),
        shm_growth_mb=float(config.get("REPRO_SOAK_SHM_GROWTH_MB")),
        hit_recovery=float(config.get("REPRO_SOAK_HIT_RECOVERY")),
        eviction_share=float(config.get("REPRO_SOAK_EVICTION_SHARE")),
        tie_tolerance=float(config.get("REPRO_TIE_TOLERANCE")),
    )


def cmd_soak_check(args: argparse.Namespace) -> int:
    """Before anything starts: Prometheus is installed and the soak's knobs make sense."""
    from reproduce_vllm_lmcache.servers import prometheus

    binary = prometheus.find_binary(config.get("REPRO_PROMETHEUS_BIN"))
    if args.observe:
        print(f"observe: Prometheus {binary}")
        return 0
    seqs, minutes = int(config.get("REPRO_SOAK_MAX_NUM_SEQS")), float(config.get("REPRO_SOAK_MINUTES"))
    if seqs < 2:
        raise KnobError(f"REPRO_SOAK_MAX_NUM_SEQS={seqs}: the soak batches requests, it needs 2 or more")
    if minutes * 60 < 2 * float(config.get("REPRO_SOAK_WARMUP_S")):
        raise KnobError(f"REPRO_SOAK_MINUTES={minutes}: the load must last at least twice REPRO_SOAK_WARMUP_S")
    _soak_bounds()  # every bound parses
    # A chat's history grows every turn (the answer and the next input); it must fit the model.
    g = {
        k: float(config.get(f"REPRO_SOAK_CHAT_{k}")) for k in ("USERS", "QPS", "SHARED_TOKENS", "HISTORY_TOKENS", "INPUT_TOKENS", "ROUND_S")
    }
    turns = g["ROUND_S"] * g["QPS"] / g["USERS"]
    longest = (
        g["SHARED_TOKENS"] + g["HISTORY_TOKENS"] + (turns + 1) * (g["INPUT_TOKENS"] + int(config.get("REPRO_SOAK_OUTPUT_TOKENS")) + 10)
    )
    if longest > int(config.get("REPRO_MAX_MODEL_LEN")):
        raise KnobError(
            f"soak chat: a session reaches ~{longest:.0f} tokens in REPRO_SOAK_CHAT_ROUND_S; "
            f"over REPRO_MAX_MODEL_LEN={config.get('REPRO_MAX_MODEL_LEN')}: shorten the round or the history"
        )
    print(f"soak: {minutes:g} min of load, L1 {config.get('REPRO_SOAK_L1_SIZE_GB')} GiB, max-num-seqs {seqs}, Prometheus {binary}")
    return 0


def cmd_soak_prometheus(args: argparse.Namespace) -> int:
    """Write DIR/prometheus.yml (both servers' /metrics) and print Prometheus's argv, NUL-separated."""
    import sys

    from reproduce_vllm_lmcache.servers import prometheus
    from reproduce_vllm_lmcache.servers.settings import Settings

    s = Settings.from_env()
    targets = {"vllm": f"{s.host}:{s.vllm_port}", "lmcache": f"{s.host}:{s.lmcache_http_port}"}
    args.dir.mkdir(parents=True, exist_ok=True)
    (args.dir / "prometheus.yml").write_text(prometheus.config_text(targets, float(config.get("REPRO_PROMETHEUS_SCRAPE_S"))))
    argv = prometheus.argv(
        prometheus.find_binary(config.get("REPRO_PROMETHEUS_BIN")),
        args.dir / "prometheus.yml",
        args.dir / "data",
        s.host,
        int(config.get("REPRO_PROMETHEUS_PORT")),
    )
    sys.stdout.write("\0".join(argv) + "\0")
    return 0


def cmd_soak_queries(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.servers import prometheus

    for name, query in prometheus.QUERIES.items():
        print(f"{name}: {query}")
    return 0


def cmd_soak_sample(args: argparse.Namespace) -> int:
    """Until stopped (SIGTERM): every INTERVAL s one JSON line of RSS per server process and /dev/shm."""
    from reproduce_vllm_lmcache.servers import prometheus

    interval = float(config.get("REPRO_SOAK_SAMPLE_S"))
    with args.out.open("a") as f:
        while True:
            started = time.monotonic()
            f.write(json.dumps(prometheus.sample(prometheus.read_leaders(args.pids))) + "\n")
            f.flush()
            time.sleep(max(0.0, interval - (time.monotonic() - started)))


def cmd_soak_answers(args: argparse.Namespace) -> int:
    """The sample prompts against the running vLLM: twice (the soak's, with LMCache) or once (plain)."""
    from reproduce_vllm_lmcache.experiments import soak
    from reproduce_vllm_lmcache.experiments.client import Session
    from reproduce_vllm_lmcache.servers.settings import Settings

    session = Session(Settings.from_env())
    try:
        found = soak.sample_answers(
            session,
            int(config.get("REPRO_SOAK_SAMPLE_TOKENS")),
            int(config.get("REPRO_SOAK_SAMPLE_PROMPTS")),
            "soak-sample",
            args.name != "baseline",
            float(config.get("REPRO_REQUEST_TIMEOUT")),
        )
    finally:
        session.close()
    path = args.run_dir / f"answers-{args.name}.json"
    path.write_text(json.dumps(found, indent=1) + "\n")
    print(f"recorded {path}")
    return 0


def cmd_soak_collect(args: argparse.Namespace) -> int:
    """At the end of the load: the Prometheus series (query_range) and the LMCache /status."""
    from reproduce_vllm_lmcache.experiments import soak
    from reproduce_vllm_lmcache.servers import http_client, lmcache_api, prometheus
    from reproduce_vllm_lmcache.servers.settings import Settings

    s = Settings.from_env()
    client = http_client.session()
    url = f"http://{s.host}:{config.get('REPRO_PROMETHEUS_PORT')}"
    step = float(config.get("REPRO_PROMETHEUS_SCRAPE_S"))
    series = prometheus.collect(client, url, args.start, args.end, step)
    (args.run_dir / "prometheus-series.json").write_text(json.dumps(series) + "\n")
    state = lmcache_api.status(client, s.lmcache_http_url)
    (args.run_dir / "lmcache-status.json").write_text(json.dumps(state, indent=1) + "\n")
    print(f"recorded {len(series)} Prometheus queries and the LMCache /status in {args.run_dir}")
    if args.kv_bytes_out:
        args.kv_bytes_out.write_text(f"{soak.kv_bytes_per_chunk(state, s.chunk_size)}\n")
    return 0


def cmd_soak_report(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.experiments import soak
    from reproduce_vllm_lmcache.report import results, soak_plots

    run_dir: Path = args.run_dir
    l1 = float(config.get("REPRO_SOAK_L1_SIZE_GB"))
    summary = soak.summarize(run_dir, _soak_bounds(), l1)
    rows = soak.load_requests(run_dir / "bench")
    series = soak.read_json(run_dir / "prometheus-series.json", {})
    soak_plots.timeline(
        rows,
        series,
        soak.load_samples(run_dir / "samples.jsonl"),
        summary["restart"],
        summary["times"]["load_started"],
        run_dir / "soak-timeline.png",
    )
    sim = summary["simulator"]
    if sim["curve"]:
        soak_plots.simulator(sim["curve"], sim["observed_vllm_hit_rate"], l1, run_dir / "soak-simulator.png")
    summary["config"] = {"knobs": config.resolved(), **results.environment()}
    path = results.write(run_dir, "soak.json", summary, latest=False)
    print("\n".join(soak.lines(summary)))
    print(f"recorded {path} and plots soak-timeline.png" + (", soak-simulator.png" if sim["curve"] else ""))
    return 0 if summary["passed"] else 1


def _register_soak(sub: Any) -> None:
    soak = sub.add_parser("soak", help="the soak's steps (scripts/soak.sh, scripts/observe.sh)").add_subparsers(dest="step", required=True)
    p = soak.add_parser("check", help="Prometheus installed, soak knobs valid")
    p.add_argument("--observe", action="store_true", help="only the Prometheus binary (scripts/observe.sh)")
    p.set_defaults(func=cmd_soak_check)
    p = soak.add_parser("prometheus", help="write DIR/prometheus.yml, print Prometheus's argv (NUL-separated)")
    p.add_argument("--dir", type=Path, required=True)
    p.set_defaults(func=cmd_soak_prometheus)
    soak.add_parser("queries", help="the PromQL queries the soak plots").set_defaults(func=cmd_soak_queries)
    p = soak.add_parser("sample", help="RSS of every server process and /dev/shm, every REPRO_SOAK_SAMPLE_S, until SIGTERM")
    p.add_argument("--pids", type=Path, required=True, help='file of "ROLE PID" lines (process-group leaders)')
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_soak_sample)
    p = soak.add_parser("answers", help="the sample prompts against the running vLLM")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--name", choices=("lmcache", "baseline"), required=True)
    p.set_defaults(func=cmd_soak_answers)
    p = soak.add_parser("collect", help="Prometheus series over the load and LMCache's /status, into the run folder")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--start", type=float, required=True)
    p.add_argument("--end", type=float, required=True)
    p.add_argument("--kv-bytes-out", type=Path, help="write the KV bytes per chunk (for the cache simulator) here")
    p.set_defaults(func=cmd_soak_collect)
    p = soak.add_parser("report", help="verdicts, soak.json and plots of a soak run folder")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=cmd_soak_report)
