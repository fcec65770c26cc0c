"""``repro`` commands of the experiments layer: only their arguments. Each command is a short
adapter to its module's ``main(args)`` (imported when the command runs, so that the light
commands bash calls often, e.g. ``repro proc``, stay fast)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

PACKAGE = "reproduce_vllm_lmcache"


def lazy(target: str) -> Callable[[argparse.Namespace], int]:
    """``"experiments.e2e:main"`` -> a function that imports that module when called and runs it."""
    module, _, name = target.partition(":")

    def run(args: argparse.Namespace) -> int:
        return int(getattr(importlib.import_module(f"{PACKAGE}.{module}"), name)(args))

    run.__doc__ = f"{PACKAGE}.{target}"
    return run


def register(sub: Any) -> None:
    from reproduce_vllm_lmcache.experiments import ab, preflight, workload

    preflight.register(sub)
    register_soak(sub)
    workload.register(sub)
    ab.register(sub)
    p = sub.add_parser("e2e", help="cold then warm requests per prompt length, proven by metrics")
    p.add_argument("--label", default="e2e", help="suffix of the run folder (default: e2e)")
    p.add_argument("--run-dir", type=Path, help="record into this folder instead of a new one")
    p.add_argument("--seed", help="prompt seed (default: a fresh one, so the first round is cold)")
    p.add_argument("--rounds", default="cold,warm", help="round names per prompt, same prompt each (default: cold,warm)")
    p.add_argument("--configuration", default="", help="configuration name recorded with each round")
    p.add_argument("--output", default="run.json", help="file name in the run folder (only run.json updates latest.json)")
    p.add_argument("--repeats", type=int, default=1, help="fresh prompts per length, each sent cold then warm (default: 1)")
    p.set_defaults(func=lazy("experiments.e2e:main"))
    p = sub.add_parser("bad-input", help="malformed ZMQ frames, bad/oversized/truncated HTTP requests to the running servers")
    p.add_argument("--target", choices=("vllm", "lmcache", "both"), default="both")
    p.add_argument("--json", type=Path, help="write the outcomes here")
    p.set_defaults(func=lazy("experiments.bad_input:main"))
    sub.add_parser("warmup", help="one short request that does a fresh vLLM's one-off work").set_defaults(
        func=lazy("experiments.e2e:warmup")
    )
    p = sub.add_parser("trace", help="one cold and one warm request drawn across both servers (REPRO_TRACE=1 servers)")
    p.add_argument("--run-dir", type=Path, help="record into this folder (default: a new results/runs/<UTC>-trace)")
    p.add_argument("--tokens", type=int, help="prompt length (default: REPRO_TRACE_PROMPT_TOKENS)")
    p.add_argument("--vllm-log", type=Path, help="vLLM's log (default: REPRO_LOG_DIR/vllm.log)")
    p.add_argument("--lmcache-log", type=Path, help="LMCache's log (default: REPRO_LOG_DIR/lmcache.log)")
    p.add_argument("--lmcache-trace", type=Path, help="LMCache's storage trace (default: REPRO_LOG_DIR/lmcache-trace.lct)")
    p.add_argument("--from", dest="recorded", type=Path, help="redraw the trace-*.json of a recorded run folder")
    p.set_defaults(func=lazy("experiments.trace_run:main"))
    p = sub.add_parser("startup", help="record one vLLM start of scripts/startup.sh (or --report the run)")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--report", action="store_true", help="merge the run's starts into startup.json and print the table")
    p.add_argument("--configuration", default="")
    p.add_argument("--log", type=Path, help="the vLLM log of this start")
    for name in ("started", "ready", "warmed"):
        p.add_argument(f"--{name}", type=float, help=f"epoch seconds: {name}")
    p.add_argument("--tokens", type=int, default=640, help="prompt length of the two first requests")
    p.set_defaults(func=lazy("experiments.startup:main"))
    p = sub.add_parser("bench", help="one configuration of the bench sweep against the running servers")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--configuration", required=True, help="name of this configuration, e.g. chunk256 or no-lmcache")
    p.add_argument("--lmcache-log", type=Path, help="the LMCache server's log (for the retrieve times)")
    p.add_argument("--vllm-ready-s", type=float, help="seconds vLLM took to become ready (recorded)")
    p.set_defaults(func=lazy("experiments.bench:main"))
    p = sub.add_parser("bench-report", help="merge a bench run folder into bench.json, plots and tables")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=lazy("report.bench:main"))
    p = sub.add_parser("engine-bench-report", help="the `lmcache bench engine` summaries of a run folder")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=lazy("report.bench:engine_main"))
    p = sub.add_parser("scenarios", help="negative, partial-prefix and multi-turn chat scenarios")
    p.add_argument("--seed", required=True, help="the seed of the cold/warm rounds run before")
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--apc", action="store_true", help="the prefix-cache scenarios (vLLM with its prefix cache and the connector)")
    p.set_defaults(func=lazy("experiments.scenarios:main"))
    p = sub.add_parser("matrix-report", help="merge a matrix run folder into matrix.json and print its table")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=lazy("report.matrix:main"))
    for name, func, text in (
        ("l2", lazy("experiments.l2:main"), "store a prompt in L1 and L2, clear L1, serve the warm request from L2 (REPRO_L2)"),
        ("eviction", lazy("experiments.eviction:main"), "a prompt stream through a small L1: hits predicted by the policy vs observed"),
        ("shared", lazy("experiments.shared:main"), "a prompt prefilled on one vLLM instance is a hit on the second"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--run-dir", type=Path, help="record the result as JSON into this folder")
        p.set_defaults(func=func)
    p = sub.add_parser("fuzz", help="schemathesis on both servers' OpenAPI, targeted hostile cases, then a cold/warm pair must still hit")
    p.add_argument("--run-dir", type=Path, help="record fuzz.json, the HAR files and logs here (default: .repro/fuzz)")
    p.set_defaults(func=lazy("experiments.fuzz:main"))
    p = sub.add_parser("tenants", help="cache_salt isolation: salt A, A again, B, none, none again, judged by both servers' counters")
    p.add_argument(
        "--path",
        choices=("local", "shared", "l2"),
        default="local",
        help="one vLLM; cold on one vLLM, rest on the second; L1 cleared before each step",
    )
    p.add_argument("--label", default="", help="name of the JSON file (tenants-LABEL.json; default: the path)")
    p.add_argument("--run-dir", type=Path, help="record the result as JSON into this folder")
    p.set_defaults(func=lazy("experiments.tenants:main"))
    p = sub.add_parser("profile-report", help="top functions of the py-spy profiles in a run folder")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=lazy("report.profile:main"))
    p = sub.add_parser("nodes", help="one phase of scripts/nodes.sh: share (A to B and back through the store) or restart")
    p.add_argument("phase", choices=("share", "restart"))
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--node", action="append", required=True, help="NAME,NETNS|-,LMCACHE_PORT,LMCACHE_HTTP_PORT,VLLM_PORT")
    p.add_argument("--coordinator", required=True, help="the coordinator's URL, as the nodes reach it")
    p.add_argument("--topology", default="", help="how the nodes are connected (recorded)")
    p.set_defaults(func=lazy("experiments.nodes:main"))


def register_soak(sub: Any) -> None:
    """The soak's steps (experiments/soak.py; the report: report/soak.py)."""
    soak = sub.add_parser("soak", help="the soak's steps (scripts/soak.sh, scripts/observe.sh)").add_subparsers(dest="step", required=True)
    p = soak.add_parser("check", help="Prometheus installed, soak knobs valid")
    p.add_argument("--observe", action="store_true", help="only the Prometheus binary (scripts/observe.sh)")
    p.set_defaults(func=lazy("experiments.soak:check"))
    p = soak.add_parser("prometheus", help="write DIR/prometheus.yml, print Prometheus's argv (NUL-separated)")
    p.add_argument("--dir", type=Path, required=True)
    p.set_defaults(func=lazy("experiments.soak:prometheus_config"))
    soak.add_parser("queries", help="the PromQL queries the soak plots").set_defaults(func=lazy("experiments.soak:queries"))
    p = soak.add_parser("sample", help="RSS of every server process and /dev/shm, every REPRO_SOAK_SAMPLE_S, until SIGTERM")
    p.add_argument("--pids", type=Path, required=True, help='file of "ROLE PID" lines (process-group leaders)')
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=lazy("experiments.soak:sample"))
    p = soak.add_parser("answers", help="the sample prompts against the running vLLM")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--name", choices=("lmcache", "baseline"), required=True)
    p.set_defaults(func=lazy("experiments.soak:answers"))
    p = soak.add_parser("collect", help="Prometheus series over the load and LMCache's /status, into the run folder")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--start", type=float, required=True)
    p.add_argument("--end", type=float, required=True)
    p.add_argument("--kv-bytes-out", type=Path, help="write the KV bytes per chunk (for the cache simulator) here")
    p.set_defaults(func=lazy("experiments.soak:collect"))
    p = soak.add_parser("report", help="verdicts, soak.json and plots of a soak run folder")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=lazy("report.soak:main"))
