"""The soak's steps while it runs (scripts/soak.sh, scripts/observe.sh): its knobs checked before
anything starts, Prometheus's config, the memory sampler, the sample answers, and the collection
of the series at the end. The verdicts over the run folder are report/soak.py's (``repro soak report``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.experiments.client import Session
from reproduce_vllm_lmcache.report import soak as soak_report
from reproduce_vllm_lmcache.servers import http_client, lmcache_api, prometheus
from reproduce_vllm_lmcache.servers.settings import Settings


def sample_answers(session: Session, tokens: int, count: int, seed: str, twice: bool, timeout: float) -> list[dict[str, Any]]:
    """count prompts of tokens each; with twice (the soak's vLLM) the second send is recorded."""
    out = []
    for i in range(count):
        ids = session.prompt(tokens, f"{seed}-{i}")
        first = session.round("cold" if twice else "baseline", f"s{i}", ids, timeout)
        r = session.round("warm", f"s{i}", ids, timeout) if twice else first
        out.append({**r.as_dict(), "prompt": f"s{i}", "first_output_tokens": first.output_tokens})
    return out


def checked(binary: str) -> str:
    """The soak's knobs parsed and checked (knobs.Soak); one line saying what it will run."""
    s = knobs.Soak.from_env()
    return f"{s.minutes:g} min of load, L1 {s.l1_size_gb:g} GiB, max-num-seqs {s.max_num_seqs}, Prometheus {binary}"


def check(args: argparse.Namespace) -> int:
    """Before anything starts: Prometheus is installed and the soak's knobs make sense."""
    binary = prometheus.find_binary(knobs.Prometheus.from_env().binary)
    print(f"observe: Prometheus {binary}" if args.observe else f"soak: {checked(binary)}")
    return 0


def prometheus_config(args: argparse.Namespace) -> int:
    """Write DIR/prometheus.yml (both servers' /metrics) and print Prometheus's argv, NUL-separated."""
    s, p = Settings.from_env(), knobs.Prometheus.from_env()
    targets = {"vllm": f"{s.host}:{s.vllm_port}", "lmcache": f"{s.host}:{s.lmcache_http_port}"}
    args.dir.mkdir(parents=True, exist_ok=True)
    (args.dir / "prometheus.yml").write_text(prometheus.config_text(targets, p.scrape_s))
    argv = prometheus.argv(prometheus.find_binary(p.binary), args.dir / "prometheus.yml", args.dir / "data", s.host, p.port)
    sys.stdout.write("\0".join(argv) + "\0")
    return 0


def queries(args: argparse.Namespace) -> int:
    for name, query in prometheus.QUERIES.items():
        print(f"{name}: {query}")
    return 0


def sample(args: argparse.Namespace) -> int:
    """Until stopped (SIGTERM): every REPRO_SOAK_SAMPLE_S one JSON line of RSS per server process and /dev/shm."""
    interval = knobs.Soak.from_env().sample_s
    with args.out.open("a") as f:
        while True:
            started = time.monotonic()
            f.write(json.dumps(prometheus.sample(prometheus.read_leaders(args.pids))) + "\n")
            f.flush()
            time.sleep(max(0.0, interval - (time.monotonic() - started)))


def answers(args: argparse.Namespace) -> int:
    """The sample prompts against the running vLLM: twice (the soak's, with LMCache) or once (plain)."""
    s, timeout = knobs.Soak.from_env(), knobs.Requests.from_env().timeout_s
    session = Session(Settings.from_env())
    try:
        found = sample_answers(session, s.sample_tokens, s.sample_prompts, "soak-sample", args.name != "baseline", timeout)
    finally:
        session.close()
    path = args.run_dir / f"answers-{args.name}.json"
    path.write_text(json.dumps(found, indent=1) + "\n")
    print(f"recorded {path}")
    return 0


def collect(args: argparse.Namespace) -> int:
    """At the end of the load: the Prometheus series (query_range) and the LMCache /status."""
    s, p = Settings.from_env(), knobs.Prometheus.from_env()
    client = http_client.session()
    series = prometheus.collect(client, f"http://{s.host}:{p.port}", args.start, args.end, p.scrape_s)
    (args.run_dir / "prometheus-series.json").write_text(json.dumps(series) + "\n")
    state = lmcache_api.status(client, s.lmcache_http_url)
    (args.run_dir / "lmcache-status.json").write_text(json.dumps(state, indent=1) + "\n")
    print(f"recorded {len(series)} Prometheus queries and the LMCache /status in {args.run_dir}")
    if args.kv_bytes_out:
        args.kv_bytes_out.write_text(f"{soak_report.kv_bytes_per_chunk(state, s.chunk_size)}\n")
    return 0
