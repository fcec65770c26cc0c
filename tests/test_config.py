"""Knob resolution: defaults.env parsed once, environment wins."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from reproduce_vllm_lmcache import config


def test_parse_env_file_skips_comments_and_blank_lines() -> None:
    text = "# comment\n\nA=1\n  B = two words \nC=\n"
    assert config.parse_env_file(text) == {"A": "1", "B": "two words", "C": ""}


def test_parse_env_file_rejects_malformed_lines() -> None:
    with pytest.raises(ValueError, match="expected KEY=value"):
        config.parse_env_file("not a knob\n")


def test_environment_overrides_default() -> None:
    default = config.defaults()["REPRO_SOURCE"]
    assert config.get("REPRO_SOURCE", environ={}) == default
    assert config.get("REPRO_SOURCE", environ={"REPRO_SOURCE": "sdist"}) == "sdist"


def test_unknown_knob_is_an_error() -> None:
    with pytest.raises(KeyError, match="unknown knob"):
        config.get("REPRO_NO_SUCH_KNOB", environ={})


def test_path_knobs_expand_home_and_anchor_relative_paths(tmp_path) -> None:
    assert config.path("REPRO_MODEL", {"REPRO_MODEL": "models/x"}) == config.ROOT / "models/x"
    assert config.path("REPRO_MODEL", {"REPRO_MODEL": str(tmp_path)}) == tmp_path
    assert not str(config.path("REPRO_CACHE_DIR", {"REPRO_CACHE_DIR": "~/c"})).startswith("~")


def test_docs_knobs_is_generated_from_defaults_env() -> None:
    """docs/knobs.md is what `repro knobs --write` makes of defaults.env: every knob, its
    default and its comment, in the file's sections."""
    page = (config.ROOT / "docs" / "knobs.md").read_text()
    assert page == config.knobs_markdown(), "docs/knobs.md is stale: run .venv/bin/repro knobs --write"
    rows = dict(re.findall(r"^\| `(REPRO_\w+)` \| `([^`]*)` \|", page, re.M))
    assert rows == config.defaults()


def test_knob_reference_keeps_each_comment_with_the_knobs_under_it() -> None:
    text = "# head\n\n# --- one ---\n# Ports of A\n# and B.\nA=1\nB=2\n\nC=3\n# --- two ---\n# D.\nD=x\n"
    assert config.documented(text) == [
        ("one", [("A", "1", "Ports of A and B."), ("B", "2", "Ports of A and B."), ("C", "3", "")]),
        ("two", [("D", "x", "D.")]),
    ]


def test_bash_and_python_read_defaults_env_alike() -> None:
    """scripts/lib.sh exports what config.get says, for every knob (one parser: config.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPRO_")} | {"REPRO_PROMPT_TOKENS": " 7 "}
    out = subprocess.run(["bash", "-c", "source scripts/lib.sh && env -0"], cwd=config.ROOT, env=env, capture_output=True, check=True)
    seen = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if item.startswith("REPRO_"))
    expected = {key: config.get(key, env) for key in config.defaults()}
    expected = {k: str(Path(v).expanduser()) if v.startswith("~") else v for k, v in expected.items()}
    assert seen == expected
