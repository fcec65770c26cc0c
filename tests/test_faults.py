"""Fault suite on real servers: what happens when the cache misbehaves. Each case adds a row
to results/faults.md (case, what happened, requests ok/failed, outputs identical, leaks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from scripted_servers import ScriptedServer, alive, expected_hit, shm_segments

from reproduce_vllm_lmcache import config
from reproduce_vllm_lmcache.report import judging

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]
ROWS: list[dict[str, str]] = []
PROMPT = "640"


@pytest.fixture(scope="module", autouse=True)
def faults_table():
    yield
    if ROWS:
        path = config.path("REPRO_RESULTS_DIR") / "faults.md"
        lines = [
            "# Fault suite (written by tests/test_faults.py on its last run)",
            "",
            "| case | what happened | requests ok/failed | outputs identical | leaks |",
            "|---|---|---|---|---|",
        ]
        lines += [f"| {r['case']} | {r['happened']} | {r['requests']} | {r['identical']} | {r['leaks']} |" for r in ROWS]
        path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return {**os.environ, "REPRO_LOG_DIR": str(tmp_path / "logs"), "REPRO_RESULTS_DIR": str(tmp_path / "results"),
            "REPRO_PROMPT_TOKENS": PROMPT}  # fmt: skip


STARTED: list[ScriptedServer] = []


@pytest.fixture(autouse=True)
def stop_leftovers():
    """Whatever a failing case left running is stopped before the next case starts."""
    yield
    while STARTED:
        STARTED.pop().interrupt()


def start(script: str, env: dict[str, str], ready: str, timeout: float = 900) -> ScriptedServer:
    server = ScriptedServer(script, env)
    STARTED.append(server)
    server.wait_for(ready, timeout)
    server.remember_group()
    return server


def rounds(env: dict[str, str], names: str, seed: str, tag: str, timeout: float = 600) -> tuple[list[dict[str, Any]] | None, str]:
    """Run the client (scripts/e2e.sh); the recorded rounds, or None when a request failed."""
    out = Path(env["REPRO_RESULTS_DIR"]) / "runs" / tag
    result = subprocess.run(
        [str(config.ROOT / "scripts/e2e.sh"), "--rounds", names, "--seed", seed, "--run-dir", str(out), "--output", "r.json"],
        cwd=config.ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    path = out / "r.json"
    return (json.loads(path.read_text())["rounds"] if path.exists() else None), result.stdout + result.stderr


def same(a: dict[str, Any], b: dict[str, Any]) -> str:
    div = judging.divergence(a, b)
    if div is None:
        return "yes"
    return f"tie at token {div['index']}" if judging.is_tie(div, 0.0) else f"NO (token {div['index']})"


def stop_all(*servers: ScriptedServer) -> str:
    pids: set[int] = set()
    for server in servers:
        pids |= server.group
        server.interrupt()
    left, segments = alive(pids), shm_segments(pids)
    assert not left, f"left running: {left}"
    assert not segments, segments
    return "none"


def test_stale_entries_after_a_dtype_change(env) -> None:
    lmcache = start("start_lmcache.sh", env, "lmcache: serving")
    seed = f"stale-{time.time_ns()}"
    vllm = start("start_vllm.sh", {**env, "REPRO_DTYPE": "float32"}, "vllm: serving")
    cold, _ = rounds(env, "cold", seed, "fp32")
    vllm.interrupt()
    # Guard off: bfloat16 vLLM finds float32 entries under the same keys.
    unguarded = {**env, "REPRO_DTYPE": "bfloat16", "REPRO_NAMESPACE_GUARD": "off"}
    vllm = start("start_vllm.sh", unguarded, "vllm: serving")
    stale, out = rounds(unguarded, "stale", seed, "bf16-stale")
    log = Path(env["REPRO_LOG_DIR"], "vllm.log").read_text(errors="replace")
    vllm.interrupt()
    # Guard on (the default): LMCache is cleared before the bfloat16 vLLM starts.
    guarded = {**env, "REPRO_DTYPE": "bfloat16"}
    vllm = start("start_vllm.sh", guarded, "vllm: serving")
    cleared = "cleared its L1" in vllm.output
    fresh, _ = rounds(guarded, "fresh", seed, "bf16-guarded")
    leaks = stop_all(vllm, lmcache)
    assert cold and stale and fresh, out[-3000:]
    mismatch = "mismatch" in log.lower() or "failed to load" in log.lower() or "recompute" in log.lower()
    ROWS.append({
        "case": "stale entries after dtype change (float32 -> bfloat16, same LMCache)",
        "happened": (f"guard off: the bfloat16 request found {stale[0]['vllm_external_hit_tokens']} hit tokens of float32 KV"
                     f"{' (load failure in the vLLM log, recomputed)' if mismatch else ''}; guard on: LMCache L1 cleared "
                     f"({cleared}), request computed ({fresh[0]['vllm_external_hit_tokens']} hit tokens)"),
        "requests": "3/0",
        "identical": f"stale vs guarded bfloat16: {same(fresh[0], stale[0])}",
        "leaks": leaks,
    })  # fmt: skip
    assert cleared and fresh[0]["vllm_external_hit_tokens"] == 0
    # kv_load_failure_policy=recompute: the request with unusable entries still answers correctly.
    assert same(fresh[0], stale[0]) != "NO", (fresh[0]["output_text"], stale[0]["output_text"])


def test_lmcache_killed_between_cold_and_warm_then_restarted(env) -> None:
    lmcache = start("start_lmcache.sh", env, "lmcache: serving")
    vllm = start("start_vllm.sh", env, "vllm: serving")
    seed = f"killed-{time.time_ns()}"
    cold, _ = rounds(env, "cold", seed, "cold")
    os.killpg(lmcache.server_pid, signal.SIGKILL)
    lmcache.proc.wait(60)
    started = time.monotonic()
    # The client talks to vLLM alone here (REPRO_CONNECTOR=0 only tells it not to scrape LMCache).
    warm, out = rounds({**env, "REPRO_CONNECTOR": "0"}, "warm", seed, "warm-no-lmcache", timeout=900)
    warm_s = time.monotonic() - started
    assert cold and warm, out[-3000:]
    # LMCache back on the same ports: does vLLM use it again?
    lmcache2 = start("start_lmcache.sh", env, "lmcache: serving")
    again, out2 = rounds(env, "cold,warm", f"{seed}-after", "after-restart", timeout=900)
    leaks = stop_all(vllm, lmcache2, lmcache)
    reconnect = (f"after the restart: {again[1]['lmcache_l1_read_chunks']} chunks read on warm" if again else
                 "after the restart: request failed: " + out2.strip().splitlines()[-1][:120])
    ROWS.append({
        "case": "LMCache killed (SIGKILL) between cold and warm, then restarted",
        "happened": f"warm answered in {warm_s:.1f} s without LMCache ({warm[0]['vllm_external_hit_tokens']} hit tokens); {reconnect}",
        "requests": f"{2 + (2 if again else 0)}/{0 if again else 1}",
        "identical": f"warm vs cold: {same(cold[0], warm[0])}",
        "leaks": leaks,
    })  # fmt: skip
    assert same(cold[0], warm[0]) == "yes"


def test_start_scripts_killed_with_sigkill_take_their_servers_along(env) -> None:
    """A start script that cannot clean up (SIGKILL) still takes its server along: LMCache
    started the plain way (the kernel's parent-death signal), vLLM forked by the preload server
    when one runs (it watches the script). The worker's segment, which nobody could unlink, is
    removed by the next vLLM preflight."""
    lmcache = start("start_lmcache.sh", {**env, "REPRO_PRELOAD": "off"}, "lmcache: serving")
    vllm = start("start_vllm.sh", env, "vllm: serving")
    pids = lmcache.group | vllm.group
    segments = shm_segments(pids)
    for server in (vllm, lmcache):
        os.kill(server.script_pid, signal.SIGKILL)
    deadline = time.monotonic() + 90
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(1)
    left = alive(pids)
    preflight = subprocess.run([str(config.ROOT / ".venv/bin/repro"), "preflight", "vllm"], cwd=config.ROOT, env=env,
                               capture_output=True, text=True, timeout=60)  # fmt: skip
    ROWS.append({
        "case": "start scripts killed with SIGKILL (no cleanup possible)",
        "happened": f"servers gone {'yes' if not left else 'NO'} within 90 s; {len(segments)} worker segment(s) "
                    f"removed by the next preflight: {'yes' if not shm_segments(pids) else 'NO'}",
        "requests": "0/0",
        "identical": "n/a",
        "leaks": "none" if not left and not shm_segments(pids) else f"{left} {shm_segments(pids)}",
    })  # fmt: skip
    assert not left, f"left running: {left}"
    assert not shm_segments(pids), preflight.stdout + preflight.stderr
    assert all(f"removed {seg}" in preflight.stdout for seg in segments), preflight.stdout


def test_l1_too_small_for_one_prompt_is_a_miss_not_a_crash(env) -> None:
    small = {**env, "REPRO_L1_SIZE_GB": "0.02", "REPRO_PROMPT_TOKENS": "1500"}
    lmcache = start("start_lmcache.sh", small, "lmcache: serving")
    vllm = start("start_vllm.sh", small, "vllm: serving")
    got, out = rounds(small, "cold,warm", f"small-{time.time_ns()}", "small")
    healthy = lmcache.proc.poll() is None and vllm.proc.poll() is None
    leaks = stop_all(vllm, lmcache)
    assert got, out[-3000:]
    cold, warm = got
    ROWS.append({
        "case": "LMCache L1 of 20 MB, 1500-token prompt (~69 MB of KV)",
        "happened": f"cold stored {cold['lmcache_l1_write_chunks']} chunks, warm read {warm['lmcache_l1_read_chunks']} "
                    f"({warm['vllm_external_hit_tokens']} hit tokens); servers still up: {healthy}",
        "requests": "2/0",
        "identical": same(cold, warm),
        "leaks": leaks,
    })  # fmt: skip
    assert healthy and warm["vllm_external_hit_tokens"] < expected_hit(1500) and same(cold, warm) == "yes"


def test_port_taken_and_bad_knobs_are_refused_before_anything_starts(env) -> None:
    import socket

    with socket.socket() as holder:
        # An earlier case's LMCache leaves connections in TIME_WAIT on this port: bind as a
        # server does (preflight checks the same way), so only a listener counts as taken.
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 5555))
        holder.listen()
        taken = subprocess.run([str(config.ROOT / "scripts/start_lmcache.sh")], cwd=config.ROOT, env=env,
                               capture_output=True, text=True, timeout=60)  # fmt: skip
    bad = subprocess.run([str(config.ROOT / "scripts/start_lmcache.sh")], cwd=config.ROOT,
                         env={**env, "REPRO_L1_SIZE_GB": "-2"}, capture_output=True, text=True, timeout=60)  # fmt: skip
    ROWS.append({
        "case": "port 5555 taken; REPRO_L1_SIZE_GB=-2",
        "happened": f"`{taken.stderr.strip()[:110]}...`; `{bad.stderr.strip()}`",
        "requests": "0/0",
        "identical": "n/a",
        "leaks": "none (nothing started)",
    })  # fmt: skip
    assert taken.returncode != 0 and f"is taken by pid {os.getpid()}" in taken.stderr
    assert bad.returncode != 0 and "REPRO_L1_SIZE_GB=-2.0: must be > 0" in bad.stderr
