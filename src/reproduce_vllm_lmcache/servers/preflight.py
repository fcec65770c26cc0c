"""Checks made before a server starts: knobs valid (via Settings) and its ports free."""

from __future__ import annotations

import errno
import shutil
import socket
import tempfile
from pathlib import Path

import psutil

from reproduce_vllm_lmcache.servers import processes
from reproduce_vllm_lmcache.servers.settings import KnobError, Settings

# Written by scripts/lib.sh's start_server into the server's private TMPDIR
# (<tmp>/repro-<name>.XXXXXX): the server's pid, once it runs.
SERVER_PID_FILE = "repro-server.pid"


def port_holder(port: int) -> str:
    """Who listens on ``port``, as far as this user may see."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid is None:
                    return "a process of another user"
                proc = psutil.Process(conn.pid)
                return f"pid {conn.pid} ({' '.join(proc.cmdline()).strip()[:160]})"
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        pass
    return f"an unknown process (try: lsof -nP -iTCP:{port} -sTCP:LISTEN)"


def port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def ports_for(server: str, settings: Settings) -> dict[str, int]:
    if server == "lmcache":
        return {"REPRO_LMCACHE_PORT": settings.lmcache_port, "REPRO_LMCACHE_HTTP_PORT": settings.lmcache_http_port}
    if server == "vllm":
        return {"REPRO_VLLM_PORT": settings.vllm_port}
    if server == "redis":
        return {"REPRO_REDIS_PORT": settings.redis_port}
    if server == "coordinator":
        return {"REPRO_COORDINATOR_PORT": settings.coordinator_port}
    raise KnobError(f"unknown server {server!r}")


def check_ports(server: str, settings: Settings) -> None:
    host = settings.store_host if server in ("redis", "coordinator") else settings.host
    for knob, port in ports_for(server, settings).items():
        if not port_free(host, port):
            raise KnobError(
                f"port {port} ({knob}) on {host} is taken by {port_holder(port)}; "
                f"stop that process or choose another port, e.g. {knob}={port + 1}"
            )


def check_redis_binary(settings: Settings) -> str:
    """The Redis server binary's path, or an error that says how to install one."""
    found = shutil.which(settings.redis_server)
    if not found:
        raise KnobError(
            f"REPRO_REDIS_SERVER={settings.redis_server!r} not found: install Redis "
            "(Debian/Ubuntu: apt install redis-server; macOS: brew install redis) or point the knob at the binary"
        )
    return found


def remove_stale_segments() -> list[str]:
    """Remove stale_segments(); one line per removed segment."""
    lines = []
    for seg in processes.stale_segments():
        size = seg.stat().st_size / 2**30
        seg.unlink(missing_ok=True)
        lines.append(f"removed {seg} ({size:.1f} GiB), left behind by a vLLM worker that is gone")
    return lines


def server_tmpdirs(tmp: Path | None = None) -> list[tuple[Path, int, float]]:
    """Private TMPDIRs of servers (scripts/lib.sh start_server), each with the pid its pid file
    names and when that file was written. Folders without the pid file (being set up, or not a
    server's) are not listed."""
    found = []
    for folder in sorted(Path(tmp or tempfile.gettempdir()).glob("repro-*.*")):
        pid_file = folder / SERVER_PID_FILE
        try:
            found.append((folder, int(pid_file.read_text().strip()), pid_file.stat().st_mtime))
        except (OSError, ValueError):
            continue
    return found


def stale_tmpdirs(tmp: Path | None = None) -> list[Path]:
    """Private TMPDIRs of servers that are gone. A start script stops its server and removes
    the folder; one killed with SIGKILL cannot, and its server dies with it (parent-death
    signal), so the folder stays."""
    return [folder for folder, pid, written in server_tmpdirs(tmp) if not processes.running(pid, started_by=written)]


def remove_stale_tmpdirs(tmp: Path | None = None) -> list[str]:
    """Remove stale_tmpdirs() (links in them are removed, not followed); one line per folder."""
    lines = []
    for folder in stale_tmpdirs(tmp):
        shutil.rmtree(folder, ignore_errors=True)
        lines.append(f"removed {folder}, the private TMPDIR of a server that is gone")
    return lines
