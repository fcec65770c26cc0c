"""A preload server: one Python process that has imported the heavy third-party libraries a
server start needs (torch with dynamo and inductor, transformers, sympy, ...) and, with
``--with-vllm``, vLLM's own serving modules, then forks a fresh process for each server start.
LMCache (the connector and the server, the code users edit most) is never imported here: every
edit there is live at the next start. An edit under vllm/ after the preload makes the preload
server refuse vLLM starts (the script then starts vLLM directly and says so) until it is
restarted; nothing stale is ever served. Standard library only in the client; POSIX only (fork).

Protocol: one JSON line per connection, ``{"argv": [...], "env": {...}, "cwd": ..., "log": ...,
"owner": pid}``; the answer is ``{"pid": N}`` or ``{"error": "..."}``. The child runs in a new
session (its pid is its process group), writes to ``log``, and is sent SIGTERM when ``owner``
(the script that asked for it) dies: a server always dies with the script that started it.

Over 300 lines: the server, its client and its fork protocol are one unit (both ends of one
socket protocol), tested together by tests/test_preload_logic.py.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import runpy
import select
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

from reproduce_vllm_lmcache.servers import netns, processes

# Imported once, before any fork (what a vLLM or LMCache start spends most of its time on;
# measured with python -X importtime). Never vllm or lmcache themselves.
PRELOAD = (
    "torch",
    "torch._dynamo",
    "torch._inductor",
    "torch._inductor.lowering",
    "torch._inductor.codecache",
    "torch.fx.experimental.symbolic_shapes",
    "sympy",
    "numpy",
    "transformers",
    "transformers.models.llama.modeling_llama",
    "tokenizers",
    "safetensors",
    "huggingface_hub",
    "numba",
    "networkx",
    "openai",
    "fastapi",
    "uvicorn",
    "uvloop",
    "pydantic",
    "aiohttp",
    "zmq",
    "msgspec",
    "prometheus_client",
    "psutil",
    "redis",
    "accelerate",
    "compressed_tensors",
    "xgrammar",
    "jinja2",
    "setproctitle",
    # What a vLLM + LMCache start still imported after the list above (sys.modules, measured):
    # 12.0 s -> 9.6 s of import after preloading.
    "requests",
    "urllib3",
    "cv2",
    "setuptools",
    "grpc",
    "google.protobuf.descriptor_pool",
    "google.protobuf.message_factory",
    "google.protobuf.text_format",
    "google.rpc.error_details_pb2",
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.metrics",
    "opentelemetry.sdk._logs",
    "opentelemetry.propagate",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    "nvtx",
    "partial_json_parser",
    "llguidance",
    "einops",
    "sortedcontainers",
    "pybase64",
    "cbor2",
    "cachetools",
    "cpuinfo",
    "cloudpickle",
    "openai_harmony",
    "sqlite3",
    "multiprocessing.shared_memory",
    "multiprocessing.synchronize",
    "prometheus_client.multiprocess",
    "starlette.middleware.cors",
    "torch.utils.cpp_extension",
    "transformers.models.auto",
    "transformers.image_processing_utils",
    "transformers.video_processing_utils",
    "transformers.tokenization_utils_sentencepiece",
    "zmq.asyncio",
    # What vLLM's first request with logprobs imports when it compiles the sampler's
    # batched_count_greater_than (py-spy of the warm-up request).
    "torch.distributed.tensor.experimental",
    "sympy.tensor.tensor",
    "torch._inductor.codegen.memory_planning",
    "torch._inductor.codegen.wrapper_fxir",
    "torch.fx.experimental.validator",
)
# With --with-vllm: what `vllm serve` imports before it serves (API server, engine core, CPU
# worker), so a forked vLLM start skips them too.
PRELOAD_VLLM = (
    "vllm.entrypoints.cli.main",
    "vllm.entrypoints.cli.serve",
    "vllm.entrypoints.openai.api_server",
    "vllm.v1.engine.async_llm",
    "vllm.v1.engine.core",
    "vllm.v1.executor.uniproc_executor",
    "vllm.v1.worker.cpu_worker",
)
STOP_GRACE_S = 30.0


class Stale(RuntimeError):
    """vllm/ changed after the preload: a forked vLLM would run the old code."""


def vllm_root(pythonpath: str) -> Path | None:
    """The first PYTHONPATH entry that holds a vllm package (REPRO_PATCHES=upstream's pristine
    tree), or None: then the checkout's vLLM is the one imported."""
    return next((Path(p) for p in pythonpath.split(os.pathsep) if p and (Path(p) / "vllm" / "__init__.py").is_file()), None)


def split_env(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """``env K=V ... cmd args`` -> ({K: V}, [cmd, args]); other argv unchanged."""
    if not argv or argv[0] != "env":
        return {}, argv
    env, rest = {}, argv[1:]
    while rest and "=" in rest[0] and not rest[0].startswith("-"):
        key, _, value = rest.pop(0).partition("=")
        env[key] = value
    return env, rest


def _run_child(request: dict[str, object]) -> None:
    """In the forked child: become the server the request describes. Never returns."""
    code = 1
    try:
        os.setsid()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        log = os.open(str(request["log"]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, 65536)  # the listening socket and the client's connection stay behind
        # The server lives in its start script's network namespace (e.g. under `ip netns exec`,
        # scripts/nodes.sh), not in the preload server's.
        owner = int(request["owner"])  # type: ignore[call-overload]
        if owner > 1 and not netns.same_as(owner):
            netns.join_process(owner)
        os.chdir(str(request["cwd"]))
        argv = [str(a) for a in request["argv"]]  # type: ignore[attr-defined]
        try:  # ps and top show the server, not the preload server (before environ changes)
            import setproctitle

            setproctitle.setproctitle(" ".join(argv))
        except ImportError:
            pass
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in dict(request["env"]).items()})  # type: ignore[call-overload]
        tempfile.tempdir = None  # the server's own TMPDIR, not the one cached while preloading
        # As a fresh interpreter would: the server's PYTHONPATH goes first (REPRO_PATCHES=upstream
        # puts the pristine LMCache there; LMCache is never preloaded, so it is imported from it).
        sys.path[:0] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        vllm_logger = sys.modules.get("vllm.logger")
        if vllm_logger is not None:  # preloaded vLLM logs as this server's environment says
            vllm_logger._configure_vllm_root_logger()
        sys.argv = argv
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        print(f"preload: forked from the preload server (pid {os.getppid()}) as pid {os.getpid()}: {' '.join(argv)}", flush=True)
        runpy.run_path(argv[0], run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - the child reports anything and exits
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def source_files(package: str) -> dict[str, int]:
    """Every imported module file of ``package`` with its modification time (ns)."""
    found = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and (name == package or name.startswith(package + ".")):
            try:
                found[path] = os.stat(path).st_mtime_ns
            except OSError:
                continue
    return found


def changed(files: dict[str, int]) -> str | None:
    """The first of ``files`` that changed or vanished since it was recorded."""
    for path, mtime in files.items():
        try:
            if os.stat(path).st_mtime_ns != mtime:
                return path
        except OSError:
            return path
    return None


class Server:
    def __init__(self, path: Path, with_vllm: bool = False) -> None:
        self.path = path
        self.with_vllm = with_vllm
        self.vllm_files: dict[str, int] = {}
        self.children: dict[int, dict[str, float]] = {}  # pid -> owner, term_sent_at

    def preload(self) -> None:
        started = time.monotonic()
        for name in PRELOAD + (PRELOAD_VLLM if self.with_vllm else ()):
            try:
                importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - a missing optional library only costs time
                print(f"preload: {name} not preloaded ({exc.__class__.__name__}: {exc})", flush=True)
        # The hash of torch's own sources that every torch.compile cache lookup keys on (the
        # first compile in each server reads all of torch's files for it, ~0.7 s); cached in
        # this process, so every forked server inherits it.
        from torch._inductor.codecache import torch_key

        torch_key()
        forbidden = ("lmcache",) if self.with_vllm else ("vllm", "lmcache")
        leaked = [m for m in sys.modules if m.split(".")[0] in forbidden]
        if leaked:
            raise RuntimeError(f"preloading imported {leaked[:3]}: edits there would not be live")
        self.vllm_files = source_files("vllm")
        # Objects that live as long as the server go to a permanent GC generation: the forked
        # servers' collections (vLLM runs a full one while starting) skip them.
        gc.collect()
        gc.freeze()
        print(
            f"preload: {len(sys.modules)} modules imported in {time.monotonic() - started:.1f} s"
            + (f" (vLLM's serving modules too: {len(self.vllm_files)} files watched)" if self.with_vllm else ""),
            flush=True,
        )

    def spawn(self, request: dict[str, object]) -> int:
        env, argv = split_env([str(a) for a in request["argv"]])  # type: ignore[attr-defined]
        if not argv or not Path(argv[0]).is_file():
            raise ValueError(f"not a Python console script: {argv[:1]}")
        with open(argv[0], "rb") as script:
            if b"python" not in script.readline():
                raise ValueError(f"{argv[0]} is not a Python script")
        request = {**request, "argv": argv, "env": {**dict(request["env"]), **env}}  # type: ignore[call-overload]
        edited = changed(self.vllm_files) if self.vllm_files and Path(argv[0]).name == "vllm" else None
        if edited:
            raise Stale(f"{edited} changed after this preload server imported it; restart the preload server")
        theirs = vllm_root(str(request["env"].get("PYTHONPATH", "")))  # type: ignore[attr-defined]
        if self.vllm_files and Path(argv[0]).name == "vllm" and theirs != vllm_root(os.environ.get("PYTHONPATH", "")):
            raise Stale(
                f"this vLLM runs from {theirs or 'the checkout'}, not the tree this preload server imported "
                "(REPRO_PATCHES=upstream has a preload server of its own)"
            )
        if Path(argv[0]).name == "vllm" and request["env"].get("LD_PRELOAD", "") != os.environ.get("LD_PRELOAD", ""):  # type: ignore[attr-defined]
            raise Stale(
                f"this vLLM asks for LD_PRELOAD={request['env'].get('LD_PRELOAD', '')!r}; a forked process keeps "  # type: ignore[attr-defined]
                f"this preload server's ({os.environ.get('LD_PRELOAD', '')!r}): REPRO_VLLM_MALLOC differs"
            )
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _run_child(request)
        self.children[pid] = {"owner": float(int(request["owner"])), "term_at": 0.0}  # type: ignore[call-overload]
        print(f"preload: started pid {pid} for pid {request['owner']}: {' '.join(argv[:3])} ...", flush=True)
        return pid

    def watch(self) -> None:
        """Reap children; stop those whose owner died (SIGTERM, SIGKILL after a grace)."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            self.children.pop(pid, None)
        now = time.monotonic()
        for pid, state in list(self.children.items()):
            if processes.running(int(state["owner"])):
                continue
            if not state["term_at"]:
                print(f"preload: pid {int(state['owner'])} is gone, stopping its server {pid}", flush=True)
                state["term_at"] = now
                _killpg(pid, signal.SIGTERM)
            elif now - state["term_at"] > STOP_GRACE_S:
                _killpg(pid, signal.SIGKILL)

    def serve(self) -> None:
        self.path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        listener.listen(8)
        print(f"preload: serving on {self.path}", flush=True)
        stop = False

        def on_term(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        try:
            while not stop:
                ready, _, _ = select.select([listener], [], [], 0.5)
                self.watch()
                if ready:
                    conn, _ = listener.accept()
                    with conn:
                        try:
                            self.answer(conn)
                        except OSError as exc:  # a client that went away; keep serving
                            print(f"preload: a client left early ({exc})", flush=True)
        finally:
            listener.close()
            self.path.unlink(missing_ok=True)
            for pid in list(self.children):
                _killpg(pid, signal.SIGTERM)
            print("preload: stopped (servers it started were sent SIGTERM)", flush=True)

    def answer(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        data = _read_line(conn)
        if not data.strip():
            return  # a liveness probe (answers())
        try:
            reply: dict[str, object] = {"pid": self.spawn(json.loads(data))}
        except Stale as exc:
            reply = {"error": str(exc), "stale": True}
        except Exception as exc:  # noqa: BLE001 - the client shows it
            reply = {"error": f"{exc.__class__.__name__}: {exc}"}
        conn.sendall(json.dumps(reply).encode() + b"\n")


def _read_line(sock: socket.socket) -> bytes:
    """One protocol message: bytes up to a newline, or whatever came before the peer closed."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def request(path: Path, argv: list[str], log: str, owner: int, timeout: float = 10) -> int:
    """Ask the preload server at ``path`` to start ``argv``; the new server's pid."""
    message = {"argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "log": log, "owner": owner}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = _read_line(sock)
    reply = json.loads(data or b"{}")
    if reply.get("stale"):
        raise Stale(reply["error"])
    if "pid" not in reply:
        raise RuntimeError(f"the preload server at {path} refused: {reply.get('error', 'no answer')}")
    return int(reply["pid"])


def answers(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(path))
        return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m reproduce_vllm_lmcache.servers.preload", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="preload, then start servers on request (foreground)")
    p.add_argument("--socket", type=Path, required=True)
    p.add_argument("--with-vllm", action="store_true", help="also preload vLLM's serving modules (never LMCache)")
    p = sub.add_parser("spawn", help="ask a running preload server to start CMD; prints its pid")
    p.add_argument("--socket", type=Path, required=True)
    p.add_argument("--log", required=True, help="the new server's output goes here")
    p.add_argument("--owner", type=int, required=True, help="the server is stopped when this pid is gone")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p = sub.add_parser("answers", help="exit 0 when a preload server answers at --socket")
    p.add_argument("--socket", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "serve":
        server = Server(args.socket, args.with_vllm)
        server.preload()
        server.serve()
        return 0
    if args.command == "answers":
        return 0 if answers(args.socket) else 1
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    try:
        print(request(args.socket, cmd, args.log, args.owner))
    except Stale as exc:
        print(f"preload: {exc}", file=sys.stderr)
        return 3
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
