"""Each bug fix carries a unit test in the upstream tree's own layout, and `repro patches test`
shows it failing on the pristine release and passing on the patched tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.workspace import upstream_tests


def test_every_bug_fix_adds_an_upstream_test() -> None:
    found = upstream_tests.fixes()
    assert {f.checkout for f in found} == {"LMCache", "vllm"}
    for fix in found:
        assert fix.tests or not fix.patch.header("Bug"), f"{fix.patch.name} has a Bug: header but adds no file under tests/"
        assert all(t.startswith("tests/") and Path(t).name.startswith("test_") for t in fix.tests)


def test_outcomes_take_the_worst_result_per_file(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(
        """<testsuites><testsuite>
        <testcase classname="tests.v1.test_a" name="test_one"/>
        <testcase classname="tests.v1.test_a" name="test_two"><failure message="x"/></testcase>
        <testcase classname="tests.v1.test_b" name="test_one"/>
        <testcase classname="" name="tests.v1.test_c"><error message="collection failure"/></testcase>
        <testcase classname="tests.v1.test_d" name="test_one"><skipped/></testcase>
        </testsuite></testsuites>"""
    )
    tests = ["tests/v1/test_a.py", "tests/v1/test_b.py", "tests/v1/test_c.py", "tests/v1/test_d.py", "tests/v1/test_e.py"]
    assert upstream_tests.outcomes(junit, tests) == {
        "tests/v1/test_a.py": "failed",
        "tests/v1/test_b.py": "passed",
        "tests/v1/test_c.py": "error",
        "tests/v1/test_d.py": "skipped",
        "tests/v1/test_e.py": "missing",
    }


@pytest.mark.upstream
def test_each_fix_fails_on_the_pristine_release_and_passes_patched() -> None:
    assert upstream_tests.main([]) == 0
    rows = json.loads((knobs.path("REPRO_RESULTS_DIR") / "upstream-tests.json").read_text())
    assert len(rows) == len(upstream_tests.fixes())
    for row in rows:
        assert row["ok"], row
        assert all(outcome in ("failed", "error") for outcome in row["pristine"]), row
        assert row["patched"] == ["passed"] * len(row["tests"]), row
