"""scripts/trace.sh on the real servers, both transfer modes (the short version: 640 tokens),
and its report.html rendered by headless Chromium."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from browser import blank, find, render
from reproduce_vllm_lmcache.config import ROOT
from scripted_servers import alive, chunk_size, expected_hit, server_pids, shm_segments

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]
TOKENS = 640


@pytest.fixture(scope="module")
def traced(tmp_path_factory) -> tuple[object, str]:
    results = tmp_path_factory.mktemp("results")
    env = {**os.environ, "REPRO_RESULTS_DIR": str(results), "REPRO_TRACE_PROMPT_TOKENS": str(TOKENS)}
    result = subprocess.run([str(ROOT / "scripts/trace.sh")], cwd=ROOT, env=env, capture_output=True, text=True)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-5000:]
    (run_dir,) = (results / "runs").glob("*-trace")
    return run_dir, out


def events(run_dir, mode: str) -> tuple[dict, list[dict]]:
    data = json.loads((run_dir / f"trace-{mode}.json").read_text())
    return data, data["events"]


def named(found: list[dict], request: str, name: str) -> list[dict]:
    return [e for e in found if e["request"] == request and e["name"] == name]


@pytest.mark.parametrize("mode", ["lmcache_driven", "engine_driven"])
def test_every_drawn_event_comes_from_a_server_record(traced, mode) -> None:
    run_dir, _ = traced
    data, found = events(run_dir, mode)
    assert {e["source"] for e in found} == {"client", "vllm metrics", "vllm log", "lmcache log", "lmcache trace"}
    chunks = TOKENS // chunk_size()  # whole chunks stored and found (vLLM still computes the last token)
    # The warm request: LMCache looked up and found every whole chunk, the connector was told so,
    # vLLM waited for the load, and the load finished before the tail's prefill.
    (lookup,) = named(found, "warm", "LOOKUP + prefetch")
    assert lookup["detail"]["chunks"] == chunks and lookup["source"] == "lmcache log"
    (result,) = named(found, "warm", "lookup result")
    assert result["detail"]["tokens"] == expected_hit(TOKENS)
    (loaded,) = named(found, "warm", "load finished")
    (prefill,) = named(found, "warm", "prefill of the tail + first token")
    assert lookup["start"] < loaded["start"] <= prefill["start"] + 0.01
    transfer = "PREPARE_RETRIEVE .. COMMIT_RETRIEVE" if mode == "engine_driven" else "retrieved (handler)"
    (retrieved,) = named(found, "warm", transfer)
    tokens = chunks * chunk_size()
    assert retrieved["detail"]["tokens"] == tokens and retrieved["detail"]["bytes"] == tokens * data["kv_bytes_per_token"]
    if mode == "lmcache_driven":  # its RETRIEVE message, seen by the MP server
        assert named(found, "warm", "RETRIEVE")[0]["detail"]["chunks"] == chunks
    # The cold request stored every whole chunk (in one or more STOREs) and read none.
    stored = sum(e["detail"]["chunks"] for e in named(found, "cold", "reserve_write"))
    assert stored == chunks and not named(found, "cold", "load finished")
    # Each request's spans sit inside its own window, from its send on.
    for request, origin in data["origins"].items():
        assert all(e["start"] >= origin - 0.05 for e in found if e["request"] == request)
    assert (run_dir / f"trace-{mode}.png").read_bytes()[:4] == b"\x89PNG"


def test_trace_stops_everything_it_started(traced) -> None:
    _, out = traced
    pids = server_pids(out)
    assert len(pids) >= 4 and not alive(pids) and not shm_segments(pids)


@pytest.mark.skipif(find() is None, reason="no Chromium (Debian: apt install chromium; .ci/run installs it)")
def test_report_renders_in_a_real_browser(traced, tmp_path) -> None:
    run_dir, _ = traced
    shot = tmp_path / "report.png"
    errors = render(run_dir / "report.html", shot, tmp_path / "profile")
    assert not errors, errors
    assert not blank(shot)
    # The check can fail: a page with a script error is caught, a white page is blank.
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><p>x</p><script>undefined_function()</script></body></html>")
    assert render(broken, tmp_path / "broken.png", tmp_path / "profile")
    white = tmp_path / "white.html"
    white.write_text("<html><body></body></html>")
    render(white, tmp_path / "white.png", tmp_path / "profile")
    assert blank(tmp_path / "white.png")
