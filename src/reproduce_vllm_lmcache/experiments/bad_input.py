"""Bad input to both servers' ports (127.0.0.1 only): malformed ZMQ frames to LMCache, bad
HTTP bodies, oversized and truncated requests to LMCache's and vLLM's HTTP ports. After every
case the server is asked whether it still serves (a real request, not only its health
endpoint), so a case that kills a loop while the health check stays green shows as such.

The ZMQ cases go last, the one-frame message (which kills pristine LMCache 0.5.6's request
loop) at the very end, so every other case meets a serving server.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import msgspec
import requests
import zmq

from reproduce_vllm_lmcache.servers import http_client
from reproduce_vllm_lmcache.servers.settings import Settings

BIG = 32 << 20  # an oversized body / frame: 32 MiB
REPLY_WAIT_S = 5.0  # for an answer the server owes (health, a well-formed request)
BAD_REPLY_WAIT_S = 2.0  # for an answer to a bad message: when one comes, it comes at once


@dataclass
class Outcome:
    server: str
    case: str
    answer: str  # what the server said to the bad input
    serving: bool  # a real request right after got its answer
    health: str  # the health endpoint right after

    @property
    def ok(self) -> bool:
        """Rejected or ignored, still serving, and the health endpoint tells the truth."""
        healthy = self.health.startswith("200")
        return self.serving and healthy

    @property
    def lying_health(self) -> bool:
        return not self.serving and self.health.startswith("200")

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok, "lying_health": self.lying_health}


# --- LMCache's ZMQ port -------------------------------------------------------------------


def _enc(value: object) -> bytes:
    return msgspec.msgpack.encode(value)


def _dealer(ctx: zmq.Context, url: str) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(url)
    return sock


def zmq_call(ctx: zmq.Context, url: str, frames: list[bytes], wait_s: float = REPLY_WAIT_S) -> list[bytes] | None:
    """Send one multipart message from a fresh DEALER; the reply frames, or None after wait_s."""
    sock = _dealer(ctx, url)
    try:
        sock.send_multipart(frames)
        return sock.recv_multipart() if sock.poll(int(wait_s * 1000), zmq.POLLIN) else None
    finally:
        sock.close(linger=0)


def lmcache_serving(ctx: zmq.Context, url: str) -> bool:
    """LMCache answers a well-formed no-op request (what a connected vLLM depends on)."""
    reply = zmq_call(ctx, url, [_enc(1), _enc("noop")])
    return reply is not None and len(reply) >= 2


def _reply_text(reply: list[bytes] | None, wait_s: float) -> str:
    if reply is None:
        return f"no reply in {wait_s:g} s"
    return f"reply of {len(reply)} frame(s)"


ZMQ_CASES: list[tuple[str, list[bytes]]] = [
    ("undecodable operation frame", [_enc(11), b"\xc1"]),
    ("unknown operation", [_enc(12), _enc("no_such_operation")]),
    ("wrong argument count", [_enc(13), _enc("get_chunk_size"), _enc(123)]),
    ("truncated msgpack payload", [_enc(14), _enc("noop"), b"\x92\x01"]),
    ("oversized frame (32 MiB)", [_enc(15), _enc("noop"), b"\0" * BIG]),
    ("one frame, b'hello'", [b"hello"]),
]


# --- HTTP ------------------------------------------------------------------------------------


def _status(response: requests.Response) -> str:
    return f"{response.status_code} {response.text[:80].strip()}"


def http_get(url: str) -> str:
    try:
        with http_client.session() as client:
            return _status(client.get(url, timeout=REPLY_WAIT_S))
    except requests.RequestException as exc:
        return f"no answer ({type(exc).__name__})"


def http_post(url: str, body: bytes, timeout: float = 30) -> str:
    try:
        with http_client.session() as client:
            return _status(client.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=timeout))
    except requests.RequestException as exc:
        return f"no answer ({type(exc).__name__})"


def truncated(host: str, port: int, path: str) -> str:
    """A request that announces 1000 bytes of body, sends 10 and hangs up."""
    with socket.create_connection((host, port), timeout=REPLY_WAIT_S) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        sock.sendall(head.encode() + b'{"prompt":')
        sock.shutdown(socket.SHUT_WR)
        try:
            data = sock.recv(200)
        except OSError as exc:
            return f"connection {type(exc).__name__}"
    return data.split(b"\r\n", 1)[0].decode(errors="replace") or "connection closed, no answer"


def http_cases(base: str, host: str, port: int, path: str, typed_body: bytes) -> list[tuple[str, Callable[[], str]]]:
    return [
        ("body not JSON", lambda: http_post(base + path, b"{not json")),
        ("fields of the wrong type", lambda: http_post(base + path, typed_body)),
        ("oversized body (32 MiB)", lambda: http_post(base + path, b'{"x": "' + b"a" * BIG + b'"}', timeout=120)),
        ("truncated request (body cut short)", lambda: truncated(host, port, path)),
    ]


def vllm_serving(settings: Settings, model: str) -> bool:
    body = {"model": model, "prompt": "Hello", "max_tokens": 1, "temperature": 0}
    try:
        with http_client.session() as client:
            return client.post(f"{settings.vllm_url}/v1/completions", json=body, timeout=120).status_code == 200
    except requests.RequestException:
        return False


def served_model(settings: Settings) -> str:
    with http_client.session() as client:
        return str(client.get(f"{settings.vllm_url}/v1/models", timeout=30).json()["data"][0]["id"])


# --- the suite -------------------------------------------------------------------------------


def run(settings: Settings, targets: tuple[str, ...] = ("vllm", "lmcache"), progress: Callable[[str], None] = print) -> list[Outcome]:
    outcomes: list[Outcome] = []

    def record(outcome: Outcome) -> None:
        outcomes.append(outcome)
        verdict = "ok" if outcome.ok else ("HEALTH SAYS HEALTHY, NOT SERVING" if outcome.lying_health else "NOT OK")
        progress(
            f"  {outcome.server:8} {outcome.case:38} -> {outcome.answer[:60]!s:62} serving={outcome.serving} health={outcome.health[:20]} {verdict}"
        )

    host = settings.host
    if "vllm" in targets:
        model = served_model(settings)
        too_long = {"model": model, "prompt": [1] * (settings.max_model_len + 10), "max_tokens": 1}
        cases = http_cases(
            settings.vllm_url, host, settings.vllm_port, "/v1/completions", b'{"model": 5, "prompt": {"a": 1}, "max_tokens": "many"}'
        )
        cases.append(
            ("prompt longer than max_model_len", lambda: http_post(f"{settings.vllm_url}/v1/completions", msgspec.json.encode(too_long)))
        )
        for name, send in cases:
            answer = send()
            record(Outcome("vllm", name, answer, vllm_serving(settings, model), http_get(f"{settings.vllm_url}/health")))
    if "lmcache" in targets:
        health = f"{settings.lmcache_http_url}/healthcheck"
        cases = http_cases(
            settings.lmcache_http_url, host, settings.lmcache_http_port, "/cache/prefetches", b'{"tokens": "not a list", "model_name": 7}'
        )
        ctx = zmq.Context()
        url = settings.lmcache_rpc_url
        try:
            for name, send in cases:
                answer = send()
                record(Outcome("lmcache", name, answer, lmcache_serving(ctx, url), http_get(health)))
            for name, frames in ZMQ_CASES:
                wait_s = 1.0 if len(frames) < 2 else BAD_REPLY_WAIT_S  # a one-frame message has no request id to answer
                answer = _reply_text(zmq_call(ctx, url, frames, wait_s), wait_s)
                time.sleep(0.5)
                record(Outcome("lmcache", f"ZMQ: {name}", answer, lmcache_serving(ctx, url), http_get(health)))
        finally:
            ctx.destroy(linger=0)
    return outcomes


def main(args: argparse.Namespace) -> int:
    """``repro bad-input``: the bad-input suite against the running servers; exit 1 when a server stopped serving."""
    from reproduce_vllm_lmcache.servers.settings import Settings

    settings = Settings.from_env()
    targets = ("vllm", "lmcache") if args.target == "both" else (args.target,)
    print(f"bad input to {', '.join(targets)} on {settings.host} (every case, then a real request and the health endpoint)")
    outcomes = run(settings, targets)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([o.as_dict() for o in outcomes], indent=1) + "\n")
    failed = [o for o in outcomes if not o.ok]
    print(f"{len(outcomes) - len(failed)}/{len(outcomes)} cases ok" + (f"; not ok: {', '.join(o.case for o in failed)}" if failed else ""))
    return 1 if failed else 0
