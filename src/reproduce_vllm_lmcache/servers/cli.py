"""``repro`` commands of the servers layer: knobs, command lines, preflight, guard, status."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from reproduce_vllm_lmcache import knobs


def cmd_config(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.servers.settings import Settings

    settings = Settings.from_env()
    print(json.dumps({"knobs": knobs.resolved(), "resolved": settings.as_dict()}, indent=2))
    return 0


def cmd_command(args: argparse.Namespace) -> int:
    """NUL-separated argv, for bash to run without any quoting issues."""
    from reproduce_vllm_lmcache.servers import commands
    from reproduce_vllm_lmcache.servers.settings import Settings

    settings = Settings.from_env()
    if args.server == "preload":
        argv = commands.preload(settings, knobs.text("REPRO_PRELOAD_SOCKET"))
    else:
        argv = {
            "lmcache": commands.lmcache,
            "vllm": commands.vllm,
            "redis": commands.redis,
            "coordinator": commands.coordinator,
        }[args.server](settings)
    sys.stdout.write("\0".join(argv) + "\0")
    return 0


def cmd_url(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.servers.settings import Settings

    settings = Settings.from_env()
    print(
        {
            "lmcache": settings.lmcache_http_url,
            "vllm": settings.vllm_url,
            "redis": settings.redis_url,
            "coordinator": settings.coordinator_base_url,
        }[args.server]
    )
    return 0


def cmd_preflight(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.servers.guards import check_memory
    from reproduce_vllm_lmcache.servers.preflight import (
        check_ports,
        check_redis_binary,
        ports_for,
        remove_stale_segments,
        remove_stale_tmpdirs,
    )
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
    memory = check_memory(settings, args.server, float(knobs.text("REPRO_MEMORY_HEADROOM_GB")))
    shown = {k: v for k, v in settings.as_dict().items() if k not in ("prompt_tokens", "max_tokens")}
    if args.server == "lmcache":
        keys = (
            "host",
            "lmcache_port",
            "lmcache_http_port",
            "l1_size_gb",
            "eviction_policy",
            "chunk_size",
            "transfer_mode",
            "lmcache_telemetry",
            "l2",
            "trace",
            "lmcache_extra_args",
        )
        shown = {k: shown[k] for k in keys}
    print(f"{args.server} knobs: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    if args.server == "vllm" and settings.vllm_layout_note:
        print(f"vllm: {settings.vllm_layout_note}")
    if args.server == "vllm" and sys.platform == "linux":
        print(
            f"vllm: malloc {settings.vllm_malloc}"
            if settings.vllm_malloc
            else "vllm: malloc glibc's (REPRO_VLLM_MALLOC; tcmalloc, which vLLM's CPU guide asks for: apt install libtcmalloc-minimal4; docs/soak.md)"
        )
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
    print("vllm: " + check_namespace(settings, knobs.text("REPRO_NAMESPACE_GUARD")))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from reproduce_vllm_lmcache.servers import status
    from reproduce_vllm_lmcache.servers.settings import Settings

    settings = Settings.from_env()
    ports = [settings.vllm_port, int(knobs.text("REPRO_SECOND_VLLM_PORT"))]
    snapshot = status.gather(settings, ports, knobs.path("REPRO_RESULTS_DIR") / "latest.json")
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


def _say(line: str) -> None:
    """Print (errors to stderr, as bash's ``>&2``), going on when the output is gone (a cleanup
    trap after Ctrl-C closed the pipe)."""
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr if line.startswith("error:") else sys.stdout, flush=True)


def cmd_proc(args: argparse.Namespace) -> int:
    """lib.sh's process helpers, one home (servers/processes.py)."""
    import shutil
    from pathlib import Path

    from reproduce_vllm_lmcache.servers import processes

    if args.action == "running":  # any of them
        return 0 if processes.alive(args.pids) else 1
    args.pid = args.pids[0]
    if args.action == "group":
        print("\n".join(str(pid) for pid in processes.group(args.pid)))
        return 0
    if args.action == "wait-exit":
        while processes.running(args.pid):
            processes.wait_gone({args.pid}, 3600)
        return 0
    log = Path(args.log) if args.log else None
    pids_file = Path(f"{log}.pids") if log else None
    if args.action == "wait-ready":
        knob = {"vllm": "REPRO_VLLM_EXTRA_ARGS", "lmcache": "REPRO_LMCACHE_EXTRA_ARGS"}.get(args.name.split("-")[0])
        extra = knobs.text(knob) if knob else ""
        hint = (
            (f"error: {knob}='{extra}' was appended to the {args.name} command line; if the log above rejects it, fix or unset {knob}")
            if extra
            else ""
        )
        if not processes.wait_ready(args.name, args.pid, args.url, args.timeout, log or Path("/dev/null"), _say, hint):
            return 1
        if pids_file:  # its processes now: if it is killed later, its workers' segments are still known
            pids_file.write_text("".join(f"{pid}\n" for pid in processes.group(args.pid)))
        return 0
    # stop: the processes remembered when it was ready, if that file is this server's (another
    # server started with the same log path, e.g. on another port, must not lend it its own).
    remembered = pids_file.read_text().split() if pids_file and pids_file.is_file() else []
    mine = str(args.pid) in remembered
    processes.stop_group(args.name, args.pid, args.grace, [int(p) for p in remembered] if mine else [], _say)
    tmpdir = Path(f"{log}.tmpdir") if log else None
    if tmpdir and tmpdir.is_file():
        shutil.rmtree(tmpdir.read_text().strip(), ignore_errors=True)
        tmpdir.unlink(missing_ok=True)
    if mine and pids_file:
        pids_file.unlink(missing_ok=True)
    return 0


def register(sub: Any) -> None:
    sub.add_parser("config", help="print every knob and the resolved settings").set_defaults(func=cmd_config)
    for name, func, text in (
        ("command", cmd_command, "print a server's command line (NUL-separated)"),
        ("url", cmd_url, "print a server's HTTP base URL"),
    ):
        p = sub.add_parser(name, help=text)
        servers = ("lmcache", "vllm", "redis", "coordinator")
        p.add_argument("server", choices=(*servers, "preload") if name == "command" else servers)
        p.set_defaults(func=func)
    sub.add_parser("guard", help="KV namespace guard before vLLM starts (needs LMCache up)").set_defaults(func=cmd_guard)
    p = sub.add_parser("status", help="what is cached, hit rates and the last requests, from the servers' endpoints")
    p.add_argument("--json", action="store_true", help="the raw snapshot as JSON")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("proc", help="process helpers of scripts/lib.sh: running, group, wait-ready, wait-exit, stop")
    p.add_argument("action", choices=("running", "group", "wait-ready", "wait-exit", "stop"))
    p.add_argument("pids", type=int, nargs="+", metavar="pid", help="the process (group leader); running: any of several")
    p.add_argument("--name", default="server", help="the server's name in messages")
    p.add_argument("--log", help="its log (LOG.pids, LOG.tmpdir beside it)")
    p.add_argument("--url", help="wait-ready: the URL that answers when it is ready (http(s)://, tcp://, unix:)")
    p.add_argument("--timeout", type=float, default=900, help="wait-ready: seconds")
    p.add_argument("--grace", type=float, default=30, help="stop: seconds between SIGTERM and SIGKILL")
    p.set_defaults(func=cmd_proc)
    sub.add_parser("lmcache-clear", help="drop everything in the running LMCache server's L1").set_defaults(func=cmd_lmcache_clear)
