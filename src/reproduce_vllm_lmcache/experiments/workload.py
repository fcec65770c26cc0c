"""Workloads (scripts/workload.sh): upstream load generators against the four cache setups.

The working set (documents x prefix tokens) is swept relative to vLLM's own KV capacity, which
the workspace sets in tokens with vLLM's ``--num-gpu-blocks-override`` (``VLLM_CPU_KVCACHE_SPACE``
takes whole GiB only). Each point runs ``vllm bench serve`` (its ``prefix_repetition`` dataset,
called in-process through ``vllm.benchmarks.serve.main``, so its imports are paid once per vLLM
start) twice with the same seed: a fill pass, then the measured pass of the same requests in the
same order; both servers' counters are scraped around each pass. Where ``REPRO_WORKLOAD_LDQA_RATIOS``
says, LMCache's own ``lmcache bench engine --workload long-doc-qa`` runs the same working set.

This module holds the knobs (:class:`Knobs`, checked before any server starts), the
configurations and the point runner; run folders are analysed in ``report/workloads.py``.

Over 300 lines: the workload's knobs and their cross-checks, the two load generators' argv and
the point runner are one experiment; the analysis already lives in report/workloads.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reproduce_vllm_lmcache import knobs as readers
from reproduce_vllm_lmcache.servers.settings import KnobError, Settings, venv_bin

# name -> (LMCache connector, vLLM's automatic prefix caching)
CONFIGURATIONS: dict[str, tuple[bool, bool]] = {
    "none": (False, False),
    "apc": (False, True),
    "lmcache": (True, False),
    "apc+lmcache": (True, True),
}


def _positive(key: str, env: dict[str, str]) -> int:
    raw = readers.text(key, env)
    if not raw.isdigit() or int(raw) < 1:
        raise KnobError(f"{key}={raw!r}: expected a whole number of at least 1")
    return int(raw)


@dataclass(frozen=True)
class Knobs:
    """The REPRO_WORKLOAD_* knobs, parsed and checked against each other."""

    capacity_tokens: int
    max_model_len: int
    ratios: tuple[float, ...]
    concurrency: tuple[int, ...]
    configurations: tuple[str, ...]
    prefix_tokens: int
    suffix_tokens: int
    output_tokens: int
    repeats: int
    passes: int
    seed: int
    ldqa_ratios: tuple[float, ...]

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Knobs:
        env = dict(os.environ) if env is None else env
        names = readers.names("REPRO_WORKLOAD_CONFIGURATIONS", env, tuple(CONFIGURATIONS))
        ratios = tuple(readers.numbers("REPRO_WORKLOAD_RATIOS", env, allow_empty=True))
        raw_ldqa = readers.text("REPRO_WORKLOAD_LDQA_RATIOS", env)
        ldqa = tuple(readers.numbers("REPRO_WORKLOAD_LDQA_RATIOS", env)) if raw_ldqa.strip() else ()
        if set(ldqa) - set(ratios):
            raise KnobError(
                f"REPRO_WORKLOAD_LDQA_RATIOS={raw_ldqa!r}: each must be one of REPRO_WORKLOAD_RATIOS ({', '.join(f'{r:g}' for r in ratios)})"
            )
        return cls(
            capacity_tokens=_positive("REPRO_WORKLOAD_CAPACITY_TOKENS", env),
            max_model_len=_positive("REPRO_WORKLOAD_MAX_MODEL_LEN", env),
            ratios=ratios,
            concurrency=tuple(readers.numbers("REPRO_WORKLOAD_CONCURRENCY", env, int, allow_empty=True)),
            configurations=names,
            prefix_tokens=_positive("REPRO_WORKLOAD_PREFIX_TOKENS", env),
            suffix_tokens=_positive("REPRO_WORKLOAD_SUFFIX_TOKENS", env),
            output_tokens=_positive("REPRO_WORKLOAD_OUTPUT_TOKENS", env),
            repeats=_positive("REPRO_WORKLOAD_REPEATS", env),
            passes=_positive("REPRO_WORKLOAD_PASSES", env),
            seed=int(readers.text("REPRO_WORKLOAD_SEED", env)),
            ldqa_ratios=ldqa,
        )

    def documents(self, ratio: float) -> int:
        """Prefixes (documents) of a working set of ``ratio`` x vLLM's capacity."""
        return max(1, round(ratio * self.capacity_tokens / self.prefix_tokens))

    def blocks(self, block_size: int) -> int:
        """vLLM's blocks for the capacity: one more than it holds, as vLLM's block pool keeps one
        back (its null block: with exactly capacity / block size blocks, a request of the whole
        capacity is refused at start, "estimated maximum model length is" one block less)."""
        return self.capacity_tokens // block_size + 1

    def request_tokens(self) -> int:
        return self.prefix_tokens + self.suffix_tokens + self.output_tokens

    def server_env(self, name: str, concurrency: int, environ: dict[str, str] | None = None) -> dict[str, str]:
        """The server knobs of one configuration (on top of the user's): vLLM's KV capacity in
        blocks, max-num-seqs matching the concurrency, connector and prefix caching."""
        env = dict(os.environ) if environ is None else environ
        connector, apc = CONFIGURATIONS[name]
        block = int(readers.text("REPRO_BLOCK_SIZE", env))
        extra = readers.text("REPRO_VLLM_EXTRA_ARGS", env)
        return {
            "REPRO_CONNECTOR": str(int(connector)),
            "REPRO_PREFIX_CACHING": str(int(apc)),
            "REPRO_MAX_NUM_SEQS": str(concurrency),
            "REPRO_MAX_MODEL_LEN": str(self.max_model_len),
            "REPRO_PROMPT_TOKENS": str(self.prefix_tokens + self.suffix_tokens),
            "REPRO_MAX_TOKENS": str(self.output_tokens),
            "REPRO_VLLM_EXTRA_ARGS": f"{extra} --num-gpu-blocks-override {self.blocks(block)}".strip(),
        }

    def check(self, settings: Settings, kv_bytes_per_token: int) -> list[str]:
        """Refuse, naming the knob and the numbers, what vLLM or LMCache would refuse or silently
        undo: a capacity below one request, a working set the L1 cannot hold. Returns the plan."""
        if self.capacity_tokens % settings.block_size:
            raise KnobError(
                f"REPRO_WORKLOAD_CAPACITY_TOKENS={self.capacity_tokens} is not a multiple of "
                f"REPRO_BLOCK_SIZE={settings.block_size} (vLLM's capacity is whole blocks)"
            )
        if self.capacity_tokens < self.max_model_len:
            raise KnobError(
                f"REPRO_WORKLOAD_CAPACITY_TOKENS={self.capacity_tokens} is below one request's length "
                f"REPRO_WORKLOAD_MAX_MODEL_LEN={self.max_model_len}: vLLM refuses to start; raise the capacity or lower the length"
            )
        if self.request_tokens() > self.max_model_len:
            raise KnobError(
                f"a request is REPRO_WORKLOAD_PREFIX_TOKENS={self.prefix_tokens} + REPRO_WORKLOAD_SUFFIX_TOKENS={self.suffix_tokens} "
                f"+ REPRO_WORKLOAD_OUTPUT_TOKENS={self.output_tokens} = {self.request_tokens()} tokens, "
                f"over REPRO_WORKLOAD_MAX_MODEL_LEN={self.max_model_len}"
            )
        if self.suffix_tokens >= settings.chunk_size or self.prefix_tokens % settings.chunk_size:
            raise KnobError(
                f"REPRO_WORKLOAD_PREFIX_TOKENS={self.prefix_tokens} must be whole LMCache chunks and "
                f"REPRO_WORKLOAD_SUFFIX_TOKENS={self.suffix_tokens} below one chunk (REPRO_CHUNK_SIZE={settings.chunk_size}): "
                "then what repeats is exactly the prefix, for both caches"
            )
        needs_l1 = any(CONFIGURATIONS[n][0] for n in self.configurations)
        largest = self.documents(max(self.ratios)) * self.prefix_tokens
        l1_bytes = settings.l1_size_gb * 2**30
        if needs_l1 and largest * kv_bytes_per_token > 0.9 * l1_bytes:
            need = largest * kv_bytes_per_token / 0.9 / 2**30
            raise KnobError(
                f"the largest working set ({max(self.ratios):g} x {self.capacity_tokens} = {largest} tokens, "
                f"{largest * kv_bytes_per_token / 2**30:.2f} GiB of KV) does not fit 90 % of LMCache's L1 "
                f"(REPRO_L1_SIZE_GB={settings.l1_size_gb:g}): set REPRO_L1_SIZE_GB={math.ceil(need * 10) / 10:g} or more, or smaller ratios"
            )
        lines = [
            f"workload: vLLM KV capacity {self.capacity_tokens} tokens ({self.blocks(settings.block_size)} blocks of "
            f"{settings.block_size}, one of them vLLM's null block), KV {kv_bytes_per_token} bytes/token ({settings.dtype}), LMCache L1 {settings.l1_size_gb:g} GiB"
        ]
        for ratio in self.ratios:
            docs = self.documents(ratio)
            lines.append(
                f"  working set {ratio:g}x: {docs} documents x {self.prefix_tokens} tokens = {docs * self.prefix_tokens} tokens, "
                f"{docs * self.repeats} requests per pass" + (" + long-doc-qa" if ratio in self.ldqa_ratios else "")
            )
        lines.append(f"  configurations {', '.join(self.configurations)} at concurrency {', '.join(map(str, self.concurrency))}")
        return lines


def kv_bytes(settings: Settings) -> int:
    from reproduce_vllm_lmcache.report import floor

    return floor.kv_bytes_per_token(floor.model_config(settings.model), settings.dtype)


def bench_serve_argv(knobs: Knobs, settings: Settings, ratio: float, index: int, concurrency: int, out: Path, name: str) -> list[str]:
    """``vllm bench serve`` arguments for one pass of one point: greedy, fixed output length."""
    docs = knobs.documents(ratio)
    return [
        "--backend",
        "openai",
        "--base-url",
        settings.vllm_url,
        "--model",
        settings.model,
        "--dataset-name",
        "prefix_repetition",
        "--prefix-repetition-prefix-len",
        str(knobs.prefix_tokens),
        "--prefix-repetition-suffix-len",
        str(knobs.suffix_tokens),
        "--prefix-repetition-num-prefixes",
        str(docs),
        "--prefix-repetition-output-len",
        str(knobs.output_tokens),
        "--num-prompts",
        str(docs * knobs.repeats),
        "--max-concurrency",
        str(concurrency),
        "--request-rate",
        "inf",
        # The same seed in both passes and in every configuration: the same requests in the same order.
        "--seed",
        str(knobs.seed * 1000 + index),
        "--temperature",
        "0",
        "--ignore-eos",
        "--percentile-metrics",
        "ttft,e2el",
        "--metric-percentiles",
        "50,90,99",
        "--disable-tqdm",
        "--save-result",
        "--save-detailed",
        "--result-dir",
        str(out),
        "--result-filename",
        f"{name}.json",
        "--request-id-prefix",
        f"{out.name}-{name}-",
    ]


def ldqa_argv(knobs: Knobs, settings: Settings, ratio: float, concurrency: int, out: Path) -> list[str]:
    docs = knobs.documents(ratio)
    return [
        str(venv_bin("lmcache")),
        "bench",
        "engine",
        "--no-interactive",
        "-q",
        "--json",
        "--no-csv",
        "--engine-url",
        settings.vllm_url,
        "--workload",
        "long-doc-qa",
        "--output-dir",
        str(out),
        "--seed",
        str(knobs.seed),
        # documents = volume x tokens-per-GB / document length, set exactly so.
        "--kv-cache-volume",
        str(docs),
        "--tokens-per-gb-kvcache",
        str(knobs.prefix_tokens),
        "--ldqa-document-length",
        str(knobs.prefix_tokens),
        "--ldqa-query-per-document",
        str(knobs.repeats),
        "--ldqa-num-inflight-requests",
        str(concurrency),
        "--ldqa-max-output-length",
        str(knobs.output_tokens),
    ]


class _Servers:
    """Both servers' counters and the LMCache L1 of the running configuration."""

    def __init__(self, settings: Settings) -> None:
        from reproduce_vllm_lmcache.servers import http_client

        self.settings = settings
        self.client = http_client.session()
        self.lmcache_url = settings.lmcache_http_url if settings.connector else None

    def counters(self) -> dict[str, float]:
        from reproduce_vllm_lmcache.servers import metrics

        settled = metrics.settled(self.client, self.lmcache_url, self.settings.vllm_url, timeout=10.0)
        values = {**settled.vllm, **settled.lmcache}
        values.update(self._gauges())
        return values

    def _gauges(self) -> dict[str, float]:
        from reproduce_vllm_lmcache.servers import metrics

        found = {k: v for k, v in metrics.scrape(self.client, self.settings.vllm_url).items() if k == "vllm:num_preemptions_total"}
        if self.lmcache_url:
            found.update(
                {k: v for k, v in metrics.scrape(self.client, self.lmcache_url).items() if k == "lmcache_mp_l1_memory_usage_bytes"}
            )
        return found

    def clear(self) -> None:
        from reproduce_vllm_lmcache.servers import lmcache_api

        if self.lmcache_url:
            lmcache_api.clear_l1(self.client, self.lmcache_url)


def _bench_serve(argv: list[str], log: Path) -> dict[str, Any]:
    """vLLM's own ``vllm bench serve``, in this process (its output into ``log``)."""
    from vllm.benchmarks.serve import add_cli_args, main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    args = parser.parse_args(argv)
    with log.open("a") as f, contextlib.redirect_stdout(f):
        result: dict[str, Any] = main(args)
    return result


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after if not k.endswith("_memory_usage_bytes")}


def run_point(servers: _Servers, knobs: Knobs, name: str, concurrency: int, ratio: float, index: int, out: Path) -> dict[str, Any]:
    """Fill pass and measured pass of one working set; then long-doc-qa where asked."""
    settings = servers.settings
    out.mkdir(parents=True, exist_ok=True)
    servers.clear()
    point: dict[str, Any] = {
        "configuration": name,
        "concurrency": concurrency,
        "ratio": ratio,
        "documents": knobs.documents(ratio),
        "capacity_tokens": knobs.capacity_tokens,
        "prefix_tokens": knobs.prefix_tokens,
        "passes": {},
    }
    # The fill pass, then REPRO_WORKLOAD_PASSES measured passes of the same requests: "measured",
    # "measured-2", ...; their spread gives each target ratio its interval (report/workloads.py).
    names = ["fill", "measured", *(f"measured-{n}" for n in range(2, knobs.passes + 1))]
    for pass_name in names:
        before = servers.counters()
        started = time.monotonic()
        result = _bench_serve(bench_serve_argv(knobs, settings, ratio, index, concurrency, out, pass_name), out / "bench-serve.log")
        after = servers.counters()
        point["passes"][pass_name] = {
            "wall_s": time.monotonic() - started,
            "counters": _delta(after, before),
            "l1_usage_bytes": after.get("lmcache_mp_l1_memory_usage_bytes"),
            "result": f"{pass_name}.json",
            **{
                k: result.get(k)
                for k in (
                    "completed",
                    "failed",
                    "duration",
                    "total_input_tokens",
                    "total_output_tokens",
                    "request_throughput",
                    "output_throughput",
                    "total_token_throughput",
                )
            },
        }
        p = point["passes"][pass_name]
        print(
            f"  {name} c={concurrency} {ratio:g}x {pass_name}: {p['completed']} requests in {p['duration']:.1f} s, "
            f"TTFT p50 {result.get('p50_ttft_ms', 0):.0f} ms, hits local {p['counters'].get('vllm:prefix_cache_hits_total', 0):.0f} "
            f"external {p['counters'].get('vllm:external_prefix_cache_hits_total', 0):.0f} of {p['total_input_tokens']} tokens",
            flush=True,
        )
    if ratio in knobs.ldqa_ratios:
        servers.clear()
        point["long_doc_qa"] = run_ldqa(servers, knobs, ratio, concurrency, out / "long-doc-qa")
    (out / "point.json").write_text(json.dumps(point, indent=1) + "\n")
    return point


def run_ldqa(servers: _Servers, knobs: Knobs, ratio: float, concurrency: int, out: Path) -> dict[str, Any]:
    """LMCache's ``lmcache bench engine --workload long-doc-qa`` on the same working set."""
    out.mkdir(parents=True, exist_ok=True)
    argv = ldqa_argv(knobs, servers.settings, ratio, concurrency, out)
    before = servers.counters()
    with (out / "bench.log").open("w") as log:
        status = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "LMCACHE_DISABLE_BANNER": "1"}).returncode
    after = servers.counters()
    summary = out / "bench_summary.json"
    if status or not summary.is_file():
        raise RuntimeError(f"lmcache bench engine long-doc-qa failed (status {status}); log: {out / 'bench.log'}")
    found = dict(json.loads(summary.read_text())["results"])
    print(
        f"  long-doc-qa {ratio:g}x: {found.get('successful_requests')} requests, TTFT p50 {found.get('p50_ttft_ms', 0):.0f} ms", flush=True
    )
    return {"results": found, "counters": _delta(after, before)}


def checked_plan() -> list[str]:
    """The knobs checked against the sweep's own server settings; the plan, one line per item
    (``repro workload check`` and ``repro preflight workload``)."""
    settings, knobs = _settings_and_knobs()
    return knobs.check(settings, kv_bytes(settings))


def cmd_check(args: argparse.Namespace) -> int:
    print("\n".join(checked_plan()))
    return 0


def _settings_and_knobs(configuration: str | None = None, concurrency: int | None = None) -> tuple[Settings, Knobs]:
    knobs = Knobs.from_env()
    env = dict(os.environ)
    env.update(knobs.server_env(configuration or knobs.configurations[-1], concurrency or max(knobs.concurrency), env))
    return Settings.from_env(env), knobs


def cmd_plan(args: argparse.Namespace) -> int:
    """One line per vLLM start of the sweep: CONFIGURATION CONCURRENCY (none first)."""
    knobs = Knobs.from_env()
    for c in knobs.concurrency:
        for name in knobs.configurations:
            print(name, c)
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    """Shell-quoted KEY=value words of one configuration, for ``eval "$(...) command"``."""
    knobs = Knobs.from_env()
    print(" ".join(f"{k}={shlex.quote(v)}" for k, v in knobs.server_env(args.configuration, args.concurrency).items()))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Every working set of one configuration against the running servers."""
    from reproduce_vllm_lmcache.report import floor

    settings, knobs = _settings_and_knobs(args.configuration, args.concurrency)
    if (settings.connector, settings.prefix_caching) != CONFIGURATIONS[args.configuration]:
        raise KnobError(f"the environment does not match configuration {args.configuration}: run through scripts/workload.sh")
    servers = _Servers(settings)
    started = time.monotonic()
    points = [
        run_point(
            servers,
            knobs,
            args.configuration,
            args.concurrency,
            ratio,
            i,
            args.run_dir / "points" / f"{args.configuration}-c{args.concurrency}-x{ratio:g}",
        )
        for i, ratio in enumerate(knobs.ratios)
    ]
    machine = {
        "copy_bytes_per_s": floor.copy_bandwidth(),
        "kv_bytes_per_token": kv_bytes(settings),
        "chunk_size": settings.chunk_size,
        "block_size": settings.block_size,
        "dtype": settings.dtype,
    }
    record = {
        "configuration": args.configuration,
        "concurrency": args.concurrency,
        "knobs": asdict(knobs),
        "settings": settings.as_dict(),
        "machine": machine,
        "vllm_ready_s": args.vllm_ready_s,
        "wall_s": time.monotonic() - started,
        "points": len(points),
    }
    (args.run_dir / "points" / f"run-{args.configuration}-c{args.concurrency}.json").write_text(json.dumps(record, indent=1) + "\n")
    return 0


def register(sub: Any) -> None:
    wl = sub.add_parser("workload", help="the workload sweep's steps (scripts/workload.sh runs them)").add_subparsers(
        dest="step", required=True
    )
    wl.add_parser("check", help="the REPRO_WORKLOAD_* knobs against the servers' (before anything starts)").set_defaults(func=cmd_check)
    wl.add_parser("plan", help="the sweep's vLLM starts: CONFIGURATION CONCURRENCY per line").set_defaults(func=cmd_plan)
    p = wl.add_parser("env", help="the server knobs of one configuration, shell-quoted")
    p.add_argument("configuration", choices=tuple(CONFIGURATIONS))
    p.add_argument("concurrency", type=int)
    p.set_defaults(func=cmd_env)
    p = wl.add_parser("run", help="every working set of one configuration against the running servers")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--configuration", choices=tuple(CONFIGURATIONS), required=True)
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--vllm-ready-s", type=float, help="seconds vLLM took to become ready (recorded)")
    p.set_defaults(func=cmd_run)
