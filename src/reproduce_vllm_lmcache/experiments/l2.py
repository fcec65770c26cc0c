"""L2 scenario: a prompt stored in L1 and in LMCache's L2 tier (Redis or disk), L1 cleared, the
warm request served from L2. Proven by LMCache's L2 counters and status, vLLM's hit tokens and
the L2 store itself (Redis key count, files on disk)."""

from __future__ import annotations

import argparse
import socket
import time
from pathlib import Path
from typing import Any

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.experiments.client import Session
from reproduce_vllm_lmcache.experiments.record import with_session
from reproduce_vllm_lmcache.experiments.scenarios import full_chunks, verdict
from reproduce_vllm_lmcache.servers import commands, lmcache_api, metrics
from reproduce_vllm_lmcache.servers.settings import KnobError, Settings


def redis_command(host: str, port: int, *words: str) -> str:
    """One RESP command over a plain socket; the reply as text (enough for DBSIZE and INFO)."""
    request = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(request.encode())
        reply = b""
        while True:
            part = sock.recv(65536)
            reply += part
            if not part or reply.startswith(b":") and reply.endswith(b"\r\n"):
                break
            if reply.startswith(b"$"):
                header, _, body = reply.partition(b"\r\n")
                if len(body) >= int(header[1:]) + 2:
                    break
    return reply.decode(errors="replace")


def store_contents(session: Session) -> dict[str, Any]:
    """What the L2 store itself holds: Redis keys and memory, or files and bytes on disk."""
    s = session.settings
    if s.l2 == "redis":
        keys = int(redis_command(s.store_host, s.redis_port, "DBSIZE").strip()[1:])
        info = redis_command(s.store_host, s.redis_port, "INFO", "memory")
        used = next((int(line.split(":")[1]) for line in info.splitlines() if line.startswith("used_memory:")), 0)
        return {"store": f"redis {s.redis_url}", "objects": keys, "bytes": used}
    files = [p for p in Path(s.l2_disk_dir).rglob("*") if p.is_file()]
    return {"store": f"disk {s.l2_disk_dir}", "objects": len(files), "bytes": sum(p.stat().st_size for p in files)}


def wait_l2_stored(session: Session, before: float, chunks: int, timeout: float = 120) -> float:
    """Seconds until LMCache reports ``chunks`` more chunks written to L2 than ``before``."""
    started = time.monotonic()
    url = session.settings.lmcache_http_url
    while True:
        done = metrics.scrape(session.client, url).get(metrics.LMCACHE_L2_STORED, 0.0) - before
        if done >= chunks and lmcache_api.l2_pending(lmcache_api.status(session.client, url)) == 0:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"LMCache wrote {done:.0f} of {chunks} chunks to L2 in {timeout:.0f} s")
        time.sleep(0.2)


def run(session: Session, tokens: int, seed: str, timeout: float) -> dict[str, Any]:
    s = session.settings
    url = s.lmcache_http_url
    ids = session.prompt(tokens, seed)
    label = f"p{tokens}"
    session.warmup()
    wait_l2_stored(session, 0.0, 0)  # the warm-up's own L2 writes are done
    stored_before = metrics.scrape(session.client, url).get(metrics.LMCACHE_L2_STORED, 0.0)
    cold = session.round("cold", label, ids, timeout)
    l2_write_s = wait_l2_stored(session, stored_before, cold.lmcache_l1_write_chunks)
    contents = store_contents(session)
    print(
        f"  L2 holds it: {contents['objects']} objects, {contents['bytes'] / 1e6:.1f} MB in {contents['store']} "
        f"({l2_write_s:.2f} s after the cold response)",
        flush=True,
    )
    warm_l1 = session.round("warm-l1", label, ids, timeout)
    lmcache_api.clear_l1(session.client, url)
    l1_after_clear = int(lmcache_api.l1(lmcache_api.status(session.client, url)).get("total_object_count", -1))
    print(f"  L1 cleared: {l1_after_clear} objects left", flush=True)
    warm_l2 = session.round("warm-l2", label, ids, timeout)
    want = full_chunks(tokens, s.chunk_size)
    checks = {
        "cold stored every chunk in L2": cold.lmcache_l1_write_chunks > 0 and contents["objects"] > 0,
        "L1 empty after clear": l1_after_clear == 0,
        "warm from L1 hit, nothing loaded from L2": warm_l1.vllm_external_hit_tokens == want and warm_l1.lmcache_l2_loaded_chunks == 0,
        "warm after clear hit, chunks loaded from L2": warm_l2.vllm_external_hit_tokens == want
        and warm_l2.lmcache_l2_loaded_chunks >= -(-want // s.chunk_size),
        "same answer (token-identical)": warm_l1.output_tokens == cold.output_tokens == warm_l2.output_tokens,
    }
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}", flush=True)
    detail = (
        f"{s.l2}: cold {cold.ttft_s:.3f} s, warm from L1 {warm_l1.ttft_s:.3f} s, warm from L2 {warm_l2.ttft_s:.3f} s "
        f"({warm_l2.vllm_external_hit_tokens} of {tokens} tokens hit, {warm_l2.lmcache_l2_loaded_chunks} chunks loaded from L2)"
    )
    result = verdict(f"L2 {s.l2}", all(checks.values()), detail, [cold, warm_l1, warm_l2])
    result.update(
        l2=s.l2,
        adapter=commands.l2_adapter(s),
        checks=checks,
        l2_contents=contents,
        l2_write_s=round(l2_write_s, 3),
        l2_status=lmcache_api.l2_adapters(lmcache_api.status(session.client, url)),
    )
    return result


def main(args: argparse.Namespace) -> int:
    """``repro l2``: store a prompt in L1 and L2, clear L1, serve the warm request from L2."""
    settings = Settings.from_env()
    if settings.l2 == "none":
        raise KnobError("REPRO_L2=none: the L2 scenario needs REPRO_L2=redis or disk (scripts/l2.sh sets it)")
    tokens = knobs.Prompts.of("l2").tokens
    timeout = knobs.Requests.from_env().timeout_s
    seed = f"l2-{settings.l2}-{time.time_ns()}"
    return with_session(lambda s: run(s, tokens, seed, timeout), args.run_dir, f"l2-{settings.l2}.json")
