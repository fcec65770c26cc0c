"""Fault suite on real servers: what happens when the cache misbehaves. Each case adds a row
to results/faults.md (kept as results/faults.json, so a partial run keeps the other rows): what
happened on the pristine upstream code (REPRO_PATCHES=upstream) and with the workspace's
patches, requests ok/failed, outputs identical, leaks. Cases that a workspace patch fixes run in
both modes in the same suite run and assert the bug on upstream and the fix with the patch."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from reproduce_vllm_lmcache import config
from reproduce_vllm_lmcache.report import judging
from reproduce_vllm_lmcache.servers import commands, http_client
from reproduce_vllm_lmcache.servers.preflight import server_tmpdirs
from reproduce_vllm_lmcache.servers.settings import Settings
from reproduce_vllm_lmcache.workspace import export
from scripted_servers import ScriptedServer, alive, expected_hit, shm_segments

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]
ROWS: dict[str, dict[str, str]] = {}
PROMPT = "640"
MODES = ["upstream", "all"]
# The pristine cases run on request (scripts/test.sh --pristine): each bug they show also has an
# upstream-style test that fails on the pristine release in every suite run (test_upstream_tests.py).
PARAMS = [pytest.param("upstream", marks=pytest.mark.pristine), "all"]
COLUMNS = {"upstream": "pristine upstream (REPRO_PATCHES=upstream)", "all": "with the workspace's patches"}
SAME = "same code in both modes (no patch concerns it)"
ORPHAN_WAIT_S = 10.0
# The copy path LMCache's server logs once: only the workspace's patch 0001-cpu-kv-copy has it.
PATCHED_COPY = re.compile(r"CPU KV copy: one copy per block for all \d+ layers")
# The lines of vLLM's log that say how far its stop got (EngineCore, the connector's shutdown).
SHUTDOWN = re.compile(r"Unlinked|Unregistering|PeriodicThread|shutdown|force kill|sigterm|removed leftover", re.I)


def row(case: str, mode: str, happened: str, **rest: str) -> None:
    """One case's outcome in one mode (the two modes of a case share its row)."""
    entry = ROWS.setdefault(case, {"upstream": "", "all": ""})
    entry[mode] = happened
    for key, value in rest.items():  # requests, identical, leaks: per mode when they differ
        if not value:
            continue
        entry[key] = f"{entry[key]}; {value}" if entry.get(key) and entry[key] != value else value


@pytest.fixture(scope="module", autouse=True)
def faults_table():
    yield
    if not ROWS:
        return
    results = config.path("REPRO_RESULTS_DIR")
    store = results / "faults.json"
    kept = json.loads(store.read_text()) if store.exists() else {}
    for case, entry in ROWS.items():  # a run of one mode keeps the other mode's cell
        earlier = kept.get(case, {})
        kept[case] = {**entry, **{mode: earlier[mode] for mode in MODES if not entry.get(mode) and earlier.get(mode)}}
    store.write_text(json.dumps(kept, indent=1) + "\n")
    lines = [
        "# Fault suite (written by tests/test_faults.py; each cell from the last run of its case in its mode)",
        "",
        f"| case | {COLUMNS['upstream']} | {COLUMNS['all']} | requests ok/failed | outputs identical | leaks |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {case} | {r['upstream'] or '-'} | {r['all'] or '-'} | {r.get('requests', '')} | {r.get('identical', '')} | "
        f"{r.get('leaks', '')} |"
        for case, r in kept.items()
    ]
    (results / "faults.md").write_text("\n".join(lines) + "\n")


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return {
        **os.environ,
        "REPRO_LOG_DIR": str(tmp_path / "logs"),
        "REPRO_RESULTS_DIR": str(tmp_path / "results"),
        "REPRO_PROMPT_TOKENS": PROMPT,
    }


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
        cwd=config.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    path = out / "r.json"
    return (json.loads(path.read_text())["rounds"] if path.exists() else None), result.stdout + result.stderr


def same(a: dict[str, Any], b: dict[str, Any]) -> str:
    div = judging.divergence(a, b)
    if div is None:
        return "yes"
    return f"tie at token {div['index']}" if judging.is_tie(div, 0.0) else f"NO (token {div['index']})"


def bad_input(env: dict[str, str], target: str) -> list[dict[str, Any]]:
    """The bad-input suite (repro bad-input) against one running server; its outcomes."""
    path = Path(env["REPRO_RESULTS_DIR"]) / f"bad-input-{target}.json"
    subprocess.run(
        [str(config.ROOT / ".venv/bin/repro"), "bad-input", "--target", target, "--json", str(path)],
        cwd=config.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert path.exists(), f"repro bad-input wrote no {path}"
    return list(json.loads(path.read_text()))


def bad_summary(outcomes: list[dict[str, Any]]) -> str:
    """One cell: each case's answer, then whether the server still served."""
    parts = []
    for o in outcomes:
        state = (
            "still serving" if o["serving"] else ("NOT serving, health still " + o["health"][:3] if o["lying_health"] else "NOT serving")
        )
        parts.append(f"{o['case']}: {o['answer'][:40].strip()} -> {state}")
    return "; ".join(parts)


def vllm_ready(settings: Settings) -> bool:
    try:
        with http_client.session() as client:
            return client.get(f"{settings.vllm_url}/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def spawn(env: dict[str, str], argv: list[str], log: Path) -> int:
    """Start argv as the start scripts do, but with no script around it: forked by the preload
    server of env's mode when one answers (lib.sh picks it), else a plain process. Its pid; it
    leads its own process group."""
    fork = (
        'source scripts/lib.sh && { preload_answers || exit 3; } && exec "$REPO_ROOT/.venv/bin/python" -m '
        'reproduce_vllm_lmcache.servers.preload spawn --socket "$REPRO_PRELOAD_SOCKET" --log "$1" --owner "$2" -- "${@:3}"'
    )
    done = subprocess.run(
        ["bash", "-c", fork, "spawn", str(log), str(os.getpid()), *argv],
        cwd=config.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode == 0:
        return int(done.stdout.split()[-1])
    assert done.returncode == 3, done.stderr
    with log.open("w") as out:
        return subprocess.Popen(argv, cwd=config.ROOT, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True).pid


def stop_all(*servers: ScriptedServer) -> str:
    pids: set[int] = set()
    for server in servers:
        pids |= server.group
        server.interrupt()
    left, segments = alive(pids), shm_segments(pids)
    assert not left, f"left running: {left}"
    assert not segments, segments
    return "none"


@pytest.mark.parametrize("mode", PARAMS)
def test_stale_entries_after_a_dtype_change(env, mode) -> None:
    """Bug: LMCache keys KV by model, not dtype/layout (patch 0004-kv-namespace-carries-layout).
    Upstream: a bfloat16 vLLM finds the float32 entries (load fails, recomputed); the workspace's
    namespace guard clears them. Patched: the key carries the layout, so no hit, guard or not."""
    env = {**env, "REPRO_PATCHES": mode}
    lmcache = start("start_lmcache.sh", env, "lmcache: serving")
    seed = f"stale-{time.time_ns()}"
    vllm = start("start_vllm.sh", {**env, "REPRO_DTYPE": "float32"}, "vllm: serving")
    cold, _ = rounds(env, "cold,warm", seed, "fp32")
    vllm.interrupt()
    # Guard off: does a bfloat16 vLLM find float32 entries under the same keys?
    unguarded = {**env, "REPRO_DTYPE": "bfloat16", "REPRO_NAMESPACE_GUARD": "off"}
    vllm = start("start_vllm.sh", unguarded, "vllm: serving")
    stale, out = rounds(unguarded, "stale", seed, "bf16-stale")
    servers = [lmcache, vllm]
    if mode == "upstream":  # the guard (the default) protects users of the pristine code
        vllm.interrupt()
        guarded = {**env, "REPRO_DTYPE": "bfloat16"}
        vllm = start("start_vllm.sh", guarded, "vllm: serving")
        servers.append(vllm)
        cleared = "cleared its L1" in vllm.output
        fresh, _ = rounds(guarded, "fresh", seed, "bf16-guarded")
    leaks = stop_all(*servers)
    assert cold and stale, out[-3000:]
    assert cold[1]["vllm_external_hit_tokens"] > 0, "the float32 warm request did not hit: nothing to go stale"
    hits = stale[0]["vllm_external_hit_tokens"]
    # The staging copy refuses an object of another size; vLLM then recomputes (kv_load_failure_policy).
    lmcache_log = Path(env["REPRO_LOG_DIR"], "lmcache.log").read_text(errors="replace")
    mismatch = "Size mismatch" in lmcache_log
    happened = f"guard off: the bfloat16 request found {hits} hit tokens of float32 KV" + (
        " (LMCache: 'Size mismatch', vLLM recomputed)" if mismatch else ""
    )
    if mode == "upstream":
        happened += f"; guard on: LMCache L1 cleared ({cleared}), request computed ({fresh[0]['vllm_external_hit_tokens']} hit tokens)"
    else:
        happened += " (the key carries dtype and layout: the guard is not needed)"
    case = "stale entries after dtype change (float32 -> bfloat16, same LMCache)"
    identical = f"upstream, stale vs guarded bfloat16: {same(fresh[0], stale[0])}" if mode == "upstream" else ""
    row(case, mode, happened, requests="3/0" if mode == "all" else "4/0", identical=identical, leaks=leaks)
    export.record(
        "0004-kv-namespace-carries-layout",
        mode,
        {
            "float32 vLLM, cold then warm": f"{cold[1]['vllm_external_hit_tokens']} hit tokens on warm",
            "bfloat16 vLLM restarted on the same LMCache, same prompt": f"{hits} hit tokens",
            "LMCache log": "ValueError: Size mismatch (the load fails, vLLM recomputes)" if mismatch else "no failed load",
        },
    )
    # The pristine LMCache must not run the workspace's copy path (patch 0001-cpu-kv-copy logs it once).
    assert bool(PATCHED_COPY.search(lmcache_log)) == (mode == "all"), "the server ran the other mode's code"
    if mode == "upstream":
        assert hits > 0, "upstream no longer serves float32 KV to bfloat16: the bug is gone, drop the patch"
        assert cleared and fresh[0]["vllm_external_hit_tokens"] == 0
        # kv_load_failure_policy=recompute: the request with unusable entries still answers right.
        assert same(fresh[0], stale[0]) != "NO", (fresh[0]["output_text"], stale[0]["output_text"])
    else:
        assert hits == 0 and not mismatch, f"with the patch a bfloat16 vLLM still found {hits} tokens of float32 KV"


@pytest.mark.parametrize("mode", PARAMS)
def test_lmcache_killed_between_cold_and_warm_then_restarted(env, mode) -> None:
    """Bug: after the LMCache server dies, vLLM's next request stalls until the connector's
    heartbeat gives up (patch 0006-dead-server-detected-on-disconnect). Also bug: the worker's
    /dev/shm segment is left for the stop script to remove (patches LMCache/0005-worker-unlinks-kv-segment,
    the unlink, and vllm/0005-engine-teardown-grace, which lets the engine shut down at all).
    Before the kill, the bad-input suite on vLLM's HTTP port."""
    env = {**env, "REPRO_PATCHES": mode}
    lmcache = start("start_lmcache.sh", env, "lmcache: serving")
    vllm = start("start_vllm.sh", env, "vllm: serving")
    seed = f"killed-{time.time_ns()}"
    cold, _ = rounds(env, "cold", seed, "cold")
    bad = bad_input(env, "vllm")
    os.killpg(lmcache.server_pid, signal.SIGKILL)
    lmcache.proc.wait(60)
    # The client talks to vLLM alone here (REPRO_CONNECTOR=0 only tells it not to scrape LMCache).
    warm, out = rounds({**env, "REPRO_CONNECTOR": "0"}, "warm", seed, "warm-no-lmcache", timeout=900)
    assert cold and warm, out[-3000:]
    # LMCache back on the same ports: does vLLM use it again?
    lmcache2 = start("start_lmcache.sh", env, "lmcache: serving")
    again, out2 = rounds(env, "cold,warm", f"{seed}-after", "after-restart", timeout=900)
    vllm.interrupt()
    left_segment = "removed leftover shared memory" in vllm.output
    leaks = stop_all(vllm, lmcache2, lmcache)
    reconnect = (
        f"after the restart: {again[1]['lmcache_l1_read_chunks']} chunks read on warm"
        if again
        else "after the restart: request failed: " + out2.strip().splitlines()[-1][:120]
    )
    stall = warm[0]["ttft_s"] - cold[0]["ttft_s"]  # the same prompt, computed both times
    row(
        "LMCache killed (SIGKILL) between cold and warm, then restarted",
        mode,
        f"warm TTFT {warm[0]['ttft_s']:.1f} s without LMCache (cold with it: {cold[0]['ttft_s']:.1f} s) ({warm[0]['vllm_external_hit_tokens']} hit tokens); {reconnect}",
        requests=f"{2 + (2 if again else 0)}/{0 if again else 1}",
        identical=f"warm vs cold: {same(cold[0], warm[0])}",
        leaks=leaks,
    )
    row(
        "vLLM stopped cleanly (Ctrl-C)",
        mode,
        "its worker's /dev/shm segment was left behind (removed by the stop script)"
        if left_segment
        else "the worker unlinked its /dev/shm segment itself",
        requests="0/0",
        identical="n/a",
        leaks=leaks,
    )
    row(
        "bad input to vLLM's HTTP port (" + ", ".join(o["case"] for o in bad) + ")",
        mode,
        bad_summary(bad),
        requests=f"{sum(o['serving'] for o in bad)}/{sum(not o['serving'] for o in bad)}",
        identical="n/a",
        leaks=leaks,
    )
    export.record(
        "0006-dead-server-detected-on-disconnect",
        mode,
        {
            "LMCache server SIGKILLed, then the same prompt again": f"TTFT {warm[0]['ttft_s']:.1f} s (cold, before the kill: {cold[0]['ttft_s']:.1f} s), {warm[0]['vllm_external_hit_tokens']} hit tokens",
            "LMCache restarted on the same ports": reconnect,
        },
    )
    stopped = {
        "vLLM stopped with Ctrl-C": "worker segment /dev/shm/lmcache_kv_<pid>_0 left behind" if left_segment else "no segment left behind"
    }
    for name in ("0005-worker-unlinks-kv-segment", "0005-engine-teardown-grace"):  # LMCache's and vLLM's half of it
        export.record(name, mode, stopped)
    assert same(cold[0], warm[0]) == "yes"
    assert all(o["ok"] for o in bad), bad
    if mode == "upstream":
        assert left_segment, "upstream unlinked its segment: the bug is gone, drop the patch"
        assert stall > 5, f"upstream's first request after the kill stalled only {stall:.1f} s: drop the patch"
    else:
        # How far the engine's shutdown got: its log (the script's output stops before it).
        log = (Path(env["REPRO_LOG_DIR"]) / "vllm.log").read_text(errors="replace")
        assert not left_segment, "\n".join(line for line in log.splitlines() if SHUTDOWN.search(line)) or log[-3000:]
        assert stall < 2, f"with the patch the first request after the kill still stalled {stall:.1f} s"


@pytest.mark.parametrize("mode", PARAMS)
def test_api_server_killed_leaves_no_orphans(env, mode, tmp_path) -> None:
    """Bug: vLLM's EngineCore outlives a SIGKILLed API server (patch vllm/0004-engine-exits-with-parent).
    vLLM is started directly (forked by the mode's preload server when one runs, as the start
    scripts do), not by start_vllm.sh, whose exit trap would stop the orphans (the workspace's
    guard) and hide the bug."""
    env = {**env, "REPRO_PATCHES": mode, "TMPDIR": str(tmp_path)}
    settings = Settings.from_env(env)
    log = tmp_path / "vllm.log"
    pid = spawn(env, commands.vllm(settings, connector=False), log)
    try:
        deadline = time.monotonic() + 600
        while not vllm_ready(settings):
            assert alive({pid}) and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(2)
        engines = {p.pid for p in psutil.Process(pid).children(recursive=True)}
        assert engines, "vLLM started no engine process"
        os.kill(pid, signal.SIGKILL)
        died = time.monotonic()
        while alive(engines) and time.monotonic() - died < ORPHAN_WAIT_S:
            time.sleep(0.5)
        orphans, gone_after = alive(engines), time.monotonic() - died
        obeyed_term = None
        if orphans:  # do they stop when asked?
            for orphan in orphans:
                os.kill(orphan, signal.SIGTERM)
            asked = time.monotonic()
            while alive(orphans) and time.monotonic() - asked < 10:
                time.sleep(0.5)
            obeyed_term = not alive(orphans)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # the group: API server and every engine process
    happened = (
        f"{len(orphans)} engine process(es) still running {ORPHAN_WAIT_S:.0f} s after the API server died; "
        f"SIGTERM then {'stopped them' if obeyed_term else 'did NOT stop them within 10 s'}"
        if orphans
        else f"its {len(engines)} engine process(es) exited {gone_after:.1f} s after the API server died"
    )
    row(
        "vLLM API server killed (SIGKILL), nothing else stopping its engine",
        mode,
        happened,
        requests="0/0",
        identical="n/a",
        leaks=f"{len(orphans)} orphan(s), killed by the test" if orphans else "none",
    )
    export.record("0004-engine-exits-with-parent", mode, {"API server SIGKILLed": happened})
    if mode == "upstream":
        assert orphans, "upstream's engine exited with its parent: the bug is gone, drop the patch"
    else:
        assert not orphans, happened


@pytest.mark.parametrize("mode", PARAMS)
def test_bad_input_to_lmcache(env, mode) -> None:
    """Bug: one malformed ZMQ message ends LMCache's request loop while /healthcheck still says
    healthy (patch 0003-mq-loop-survives-bad-messages). The bad-input suite on both of
    LMCache's ports; the loop-killing one-frame message goes last."""
    env = {**env, "REPRO_PATCHES": mode}
    lmcache = start("start_lmcache.sh", env, "lmcache: serving")
    bad = bad_input(env, "lmcache")
    leaks = stop_all(lmcache)
    http = [o for o in bad if not o["case"].startswith("ZMQ")]
    zmq_cases = [o for o in bad if o["case"].startswith("ZMQ")]
    for name, group in (("HTTP", http), ("ZMQ", zmq_cases)):
        row(
            f"bad input to LMCache's {name} port (" + ", ".join(o["case"].removeprefix("ZMQ: ") for o in group) + ")",
            mode,
            bad_summary(group),
            requests=f"{sum(o['serving'] for o in group)}/{sum(not o['serving'] for o in group)}",
            identical="n/a",
            leaks=leaks,
        )
    one_frame = zmq_cases[-1]
    export.record(
        "0003-mq-loop-survives-bad-messages",
        mode,
        {
            "one-frame message b'hello' from a DEALER socket": one_frame["answer"],
            "then a well-formed request (noop)": "answered" if one_frame["serving"] else "no answer (request loop dead)",
            "then GET /healthcheck": one_frame["health"],
            "other bad input (" + str(len(bad) - 1) + " cases)": "still serving after each"
            if all(o["serving"] for o in bad[:-1])
            else "NOT serving after some",
        },
    )
    assert all(o["ok"] for o in bad[:-1]), bad
    assert one_frame["case"] == "ZMQ: one frame, b'hello'"
    if mode == "upstream":
        assert one_frame["lying_health"], f"upstream survived the one-frame message: the bug is gone, drop the patch ({one_frame})"
    else:
        assert one_frame["ok"], one_frame


def test_small_l1_then_start_scripts_killed_with_sigkill(env) -> None:
    """Two cases on one pair of servers. An L1 too small for one prompt: a miss, not a crash.
    Then a start script that cannot clean up (SIGKILL) still takes its server along: LMCache
    started the plain way (the kernel's parent-death signal), vLLM forked by the preload server
    when one runs (it watches the script). The worker's segment is gone afterwards: unlinked by
    the worker itself when it got to shut down (patch 0005), else removed by the next preflight,
    which also removes the servers' private TMPDIRs."""
    small = {**env, "REPRO_L1_SIZE_GB": "0.02", "REPRO_PROMPT_TOKENS": "1500"}
    lmcache = start("start_lmcache.sh", {**small, "REPRO_PRELOAD": "off"}, "lmcache: serving")
    vllm = start("start_vllm.sh", small, "vllm: serving")
    got, out = rounds(small, "cold,warm", f"small-{time.time_ns()}", "small")
    healthy = lmcache.proc.poll() is None and vllm.proc.poll() is None
    pids = lmcache.group | vllm.group
    segments = shm_segments(pids)
    tmpdirs = [folder for folder, pid, _ in server_tmpdirs() if pid in {lmcache.server_pid, vllm.server_pid}]
    for server in (vllm, lmcache):
        os.kill(server.script_pid, signal.SIGKILL)
    deadline = time.monotonic() + 90
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(1)
    left = alive(pids)
    leftover = shm_segments(pids)
    preflight = subprocess.run(
        [str(config.ROOT / ".venv/bin/repro"), "preflight", "vllm"], cwd=config.ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert got, out[-3000:]
    cold, warm = got
    case = "LMCache L1 of 20 MB, 1500-token prompt (~69 MB of KV)"
    row(case, "upstream", SAME)
    row(
        case,
        "all",
        f"cold stored {cold['lmcache_l1_write_chunks']} chunks, warm read {warm['lmcache_l1_read_chunks']} "
        f"({warm['vllm_external_hit_tokens']} hit tokens); servers still up: {healthy}",
        requests="2/0",
        identical=same(cold, warm),
        leaks="see the next row (the servers are then SIGKILLed)",
    )
    case = "start scripts killed with SIGKILL (no cleanup possible)"
    row(case, "upstream", SAME)
    kept = [str(d) for d in tmpdirs if d.exists()]
    row(
        case,
        "all",
        f"servers gone {'yes' if not left else 'NO'} within 90 s; {len(segments)} worker segment(s), "
        f"{len(leftover)} left for the next preflight, and {len(tmpdirs)} private TMPDIR(s); "
        f"all gone after it: {'yes' if not shm_segments(pids) and not kept else 'NO'}",
        requests="0/0",
        identical="n/a",
        leaks="none" if not left and not shm_segments(pids) and not kept else f"{left} {shm_segments(pids)} {kept}",
    )
    assert healthy and warm["vllm_external_hit_tokens"] < expected_hit(1500) and same(cold, warm) == "yes"
    assert not left, f"left running: {left}"
    assert not shm_segments(pids), preflight.stdout + preflight.stderr
    assert segments, "vLLM's worker had no segment: nothing was checked"
    assert all(f"removed {seg}" in preflight.stdout for seg in leftover), preflight.stdout
    assert len(tmpdirs) == 2, f"expected the two servers' private TMPDIRs, found {tmpdirs}"
    assert not kept, preflight.stdout + preflight.stderr


def test_port_taken_and_bad_knobs_are_refused_before_anything_starts(env) -> None:
    import socket

    with socket.socket() as holder:
        # An earlier case's LMCache leaves connections in TIME_WAIT on this port: bind as a
        # server does (preflight checks the same way), so only a listener counts as taken.
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 5555))
        holder.listen()
        taken = subprocess.run(
            [str(config.ROOT / "scripts/start_lmcache.sh")], cwd=config.ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    bad = subprocess.run(
        [str(config.ROOT / "scripts/start_lmcache.sh")],
        cwd=config.ROOT,
        env={**env, "REPRO_L1_SIZE_GB": "-2"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    case = "port 5555 taken; REPRO_L1_SIZE_GB=-2"
    row(case, "upstream", SAME)
    row(
        case,
        "all",
        f"`{taken.stderr.strip()[:110]}...`; `{bad.stderr.strip()}`",
        requests="0/0",
        identical="n/a",
        leaks="none (nothing started)",
    )
    assert taken.returncode != 0 and f"is taken by pid {os.getpid()}" in taken.stderr
    assert bad.returncode != 0 and "REPRO_L1_SIZE_GB=-2.0: must be > 0" in bad.stderr
