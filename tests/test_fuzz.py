"""Hostile input on the real servers (scripts/fuzz.sh), short version: a few schemathesis
examples per operation against both servers' /openapi.json, every targeted case, then the
cold/warm pair that must still hit. The recorded run (30 examples, 300 s per server) is in
results/runs/*-fuzz (docs/guards-and-faults.md)."""

from __future__ import annotations

import json
import os

import pytest

from scripted_servers import run_script

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def test_fuzz_finds_no_server_error_and_servers_still_hit(tmp_path) -> None:
    env = {
        **os.environ,
        "REPRO_RESULTS_DIR": str(tmp_path),
        "REPRO_FUZZ_EXAMPLES": "2",
        "REPRO_FUZZ_MAX_TIME_S": "10",
        # Shorter limits than the recorded run: the targeted prompts at the model length cost
        # less, and a generated request without max_tokens stops after 32 tokens instead of
        # generating to the model length.
        "REPRO_MAX_MODEL_LEN": "2048",
        "REPRO_PROMPT_TOKENS": "640",
        "REPRO_VLLM_EXTRA_ARGS": """--override-generation-config '{"max_new_tokens": 32}'""",
    }
    run_script("fuzz.sh", env)
    (run_dir,) = (tmp_path / "runs").glob("*-fuzz")
    data = json.loads((run_dir / "fuzz.json").read_text())
    assert data["passed"], data["checks"]
    for name in ("vllm", "lmcache"):
        found = data["schemathesis"][name]
        assert found["requests"] > 0 and not found["server_errors"], found
        assert any(op.startswith("POST /v1/completions") for op in found["operations"]) or name == "lmcache"
    assert data["after"]["warm"]["vllm_external_hit_tokens"] > 0
    assert data["after"]["warm"]["output_tokens"] == data["after"]["cold"]["output_tokens"]
    assert {c["case"] for c in data["targeted"]} >= {"token id = vocabulary size", "prompt past max-model-len"}
    assert all(c["ok"] for c in data["targeted"]), [c for c in data["targeted"] if not c["ok"]]
