"""``repro`` commands of the servers layer: knobs, command lines, preflight, guard, status."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from reproduce_vllm_lmcache import config


def cmd_config(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.servers.settings import Settings

    settings = Settings.from_env()
    print(json.dumps({"knobs": config.resolved(), "resolved": settings.as_dict()}, indent=2))
    return 0


def cmd_command(args: argparse.Namespace) -> int:
    """NUL-separated argv, for bash to run without any quoting issues."""
    from reproduce_vllm_lmcache.servers.settings import Settings

    settings = Settings.from_env()
    if args.server == "preload":
        argv = settings.preload_argv(config.get("REPRO_PRELOAD_SOCKET"))
    else:
        argv = {"lmcache": settings.lmcache_argv, "vllm": settings.vllm_argv, "redis": settings.redis_argv,
                "coordinator": settings.coordinator_argv}[args.server]()  # fmt: skip
    sys.stdout.write("\0".join(argv) + "\0")
    return 0


def cmd_url(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.servers.settings import Settings

    settings = Settings.from_env()
    print({"lmcache": settings.lmcache_http_url, "vllm": settings.vllm_url, "redis": settings.redis_url,
           "coordinator": settings.coordinator_base_url}[args.server])  # fmt: skip
    return 0


def cmd_preflight(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.servers.guards import check_memory
    from reproduce_vllm_lmcache.servers.preflight import check_ports, check_redis_binary, ports_for, remove_stale_segments, remove_stale_tmpdirs
    from reproduce_vllm_lmcache.servers.settings import Settings

    settings = Settings.from_env()
    check_ports(args.server, settings)
    for line in remove_stale_tmpdirs():
        print(f"{args.server}: {line}")
    if args.server == "redis":
        print(f"redis: {check_redis_binary(settings)} on {settings.redis_url}, folder {settings.redis_dir}")
        return 0
    if args.server == "coordinator":
        print(f"coordinator: LMCache's, on {settings.coordinator_base_url}")
        return 0
    if args.server == "vllm":
        for line in remove_stale_segments():
            print(f"vllm: {line}")
    memory = check_memory(settings, args.server, float(config.get("REPRO_MEMORY_HEADROOM_GB")))
    shown = {k: v for k, v in settings.as_dict().items() if k not in ("prompt_tokens", "max_tokens")}
    if args.server == "lmcache":
        keys = ("host", "lmcache_port", "lmcache_http_port", "l1_size_gb", "eviction_policy", "chunk_size", "transfer_mode", "lmcache_telemetry", "l2", "trace", "lmcache_extra_args")
        shown = {k: shown[k] for k in keys}
    print(f"{args.server} knobs: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    if args.server == "vllm" and settings.vllm_layout_note:
        print(f"vllm: {settings.vllm_layout_note}")
    print(f"{args.server} ports free: " + ", ".join(str(p) for p in ports_for(args.server, settings).values()))
    print(f"{args.server} {memory}")
    return 0


def cmd_guard(args: argparse.Namespace) -> int:
    """Before vLLM starts against a running LMCache: the KV namespace guard."""
    from reproduce_vllm_lmcache.servers.guards import check_namespace
    from reproduce_vllm_lmcache.servers.settings import Settings

    settings = Settings.from_env()
    if not settings.connector:
        print("vllm: no connector, LMCache not used")
        return 0
    print("vllm: " + check_namespace(settings, config.get("REPRO_NAMESPACE_GUARD")))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.servers import status
    from reproduce_vllm_lmcache.servers.settings import Settings

    settings = Settings.from_env()
    ports = [settings.vllm_port, int(config.get("REPRO_SECOND_VLLM_PORT"))]
    snapshot = status.gather(settings, ports, config.path("REPRO_RESULTS_DIR") / "latest.json")
    print(json.dumps(snapshot, indent=2) if args.json else status.render(snapshot))
    return 0


def cmd_lmcache_clear(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.servers import http_client, lmcache_api
    from reproduce_vllm_lmcache.servers.settings import Settings

    url = Settings.from_env().lmcache_http_url
    with http_client.session() as session:
        lmcache_api.clear_l1(session, url)
    print(f"cleared the L1 of the LMCache server at {url}")
    return 0


def register(sub: Any) -> None:
    sub.add_parser("config", help="print every knob and the resolved settings").set_defaults(func=cmd_config)
    for name, func, text in (
        ("command", cmd_command, "print a server's command line (NUL-separated)"),
        ("url", cmd_url, "print a server's HTTP base URL"),
        ("preflight", cmd_preflight, "validate knobs and ports before starting a server"),
    ):
        p = sub.add_parser(name, help=text)
        servers = ("lmcache", "vllm", "redis", "coordinator")
        p.add_argument("server", choices=(*servers, "preload") if name == "command" else servers)
        p.set_defaults(func=func)
    sub.add_parser("guard", help="KV namespace guard before vLLM starts (needs LMCache up)").set_defaults(func=cmd_guard)
    p = sub.add_parser("status", help="what is cached, hit rates and the last requests, from the servers' endpoints")
    p.add_argument("--json", action="store_true", help="the raw snapshot as JSON")
    p.set_defaults(func=cmd_status)
    sub.add_parser("lmcache-clear", help="drop everything in the running LMCache server's L1").set_defaults(func=cmd_lmcache_clear)
