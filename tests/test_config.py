"""Knob resolution: defaults.env parsed once, environment wins."""

import re

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


def test_readme_documents_every_knob_with_its_default() -> None:
    readme = (config.ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(REPRO_\w+)` \| `([^`]*)` \|", readme, re.M))
    assert rows == config.defaults()
