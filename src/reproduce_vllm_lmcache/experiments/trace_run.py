"""``repro trace``: run the traced cold/warm pair against servers started with REPRO_TRACE=1
(scripts/trace.sh), collect its events from both servers' logs (experiments/trace.py) and draw
the timeline; or redraw a recorded run. Kept apart from trace.py, which is the event parsing."""

from __future__ import annotations

import argparse
import json
import time

from reproduce_vllm_lmcache import config, knobs


def main(args: argparse.Namespace) -> int:
    """``repro trace``: one cold and one warm request drawn across both servers (or a recorded trace redrawn)."""
    from reproduce_vllm_lmcache.experiments import client, trace
    from reproduce_vllm_lmcache.report import floor, results, timeline
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
    logs = knobs.Places.from_env().log_dir
    vllm_log, lmcache_log = args.vllm_log or logs / "vllm.log", args.lmcache_log or logs / "lmcache.log"
    storage = args.lmcache_trace or logs / "lmcache-trace.lct"
    run_dir = args.run_dir or results.new_run_dir("trace")
    run_dir.mkdir(parents=True, exist_ok=True)
    tokens = args.tokens or knobs.Prompts.of("trace").tokens
    session = client.Session(settings)
    try:
        rounds = trace.run(session, tokens, f"trace-{time.time_ns()}", knobs.Requests.from_env().timeout_s)
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
        "config": {"knobs": knobs.resolved(), **settings.as_dict(), **results.environment()},
        "rounds": rounds,
        "events": [e.as_dict() for e in events],
    }
    timeline.draw(data["events"], origins, title, run_dir / f"{name}.png")
    path = results.write(run_dir, f"{name}.json", data, latest=False)
    print(timeline.summary(data["events"], origins))
    print(f"recorded {path} and {name}.png")
    return 0
