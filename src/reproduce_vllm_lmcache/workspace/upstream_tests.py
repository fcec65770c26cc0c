"""``repro patches test``: the upstream-style unit test of each bug fix, run against the pristine
release and against the patched tree.

Every patch with a ``Bug:`` header (and vLLM 0002, a fix the fast layout needs) adds a test file in the upstream tree's own layout
(LMCache ``tests/v1/...``, vLLM ``tests/...``), as upstream's PR templates ask. This module builds
two temporary worktrees per checkout: the pristine release tag plus only those test files, and
the tag with every workspace patch applied. One pytest run in each (with that tree first on
``PYTHONPATH``, the checkout's compiled extensions linked in) must show every fix's test failing
on the first and passing on the second. Standard library only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.config import ROOT
from reproduce_vllm_lmcache.workspace import checkouts, patches, pins
from reproduce_vllm_lmcache.workspace.checkouts import git

# vLLM's tests/conftest.py needs vLLM's own test requirements (tblib, ...), which the workspace
# does not install; the fixes' tests use none of its fixtures. LMCache's conftest loads here.
PYTEST_ARGS = {"vllm": ["--noconftest"]}
TIMEOUT_S = 900


@dataclass(frozen=True)
class Fix:
    checkout: str
    patch: patches.Patch
    tests: tuple[str, ...]


def added_tests(patch: patches.Patch) -> list[str]:
    """The files under tests/ that the patch's diff creates."""
    found, current = [], ""
    for line in patch.path.read_text().splitlines():
        if line.startswith("diff --git a/"):
            current = line.split(" b/", 1)[1]
        elif line.startswith("new file mode") and current.startswith("tests/"):
            found.append(current)
    return found


def fixes(checkout: str | None = None) -> list[Fix]:
    """Every patch with a ``Bug:`` header (which must add a test) or that adds a test (e.g. a
    robustness fix the workspace needs to run, kept in upstream mode)."""
    found = []
    for src in pins.sources():
        if checkout in (None, src.checkout):
            for p in patches.for_checkout(src.checkout):
                tests = tuple(added_tests(p))
                if p.header("Bug") or tests:
                    found.append(Fix(src.checkout, p, tests))
    return found


def outcomes(junit: Path, tests: list[str]) -> dict[str, str]:
    """Per test file, from pytest's JUnit XML: passed, failed (an assertion or exception in a
    test), error (collection or fixture error, e.g. an import of what the fix adds), skipped,
    or missing."""
    cases: dict[str, list[str]] = {t: [] for t in tests}
    for case in ET.parse(junit).getroot().iter("testcase"):
        node = ".".join(part for part in (case.get("classname"), case.get("name")) if part)
        kinds = {child.tag for child in case}
        kind = "error" if "error" in kinds else "failed" if "failure" in kinds else "skipped" if "skipped" in kinds else "passed"
        for test in tests:
            if node.startswith(test.removesuffix(".py").replace("/", ".")):
                cases[test].append(kind)
    order = ("error", "failed", "passed", "skipped")
    return {t: next((k for k in order if k in kinds), "missing") if kinds else "missing" for t, kinds in cases.items()}


def run_pytest(src: pins.Source, tree: Path, tests: list[str], log: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    where = subprocess.run(
        [sys.executable, "-c", f"import importlib.util as u; print(u.find_spec({src.pypi_name!r}).origin)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(where).resolve().is_relative_to(tree.resolve()):
        raise patches.PatchError(f"{src.pypi_name} imports from {where}, not from the tree under test {tree}")
    junit = log.with_suffix(".xml")
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-o",
        "junit_family=xunit1",
        "--continue-on-collection-errors",
        f"--junitxml={junit}",
        *PYTEST_ARGS.get(src.checkout, []),
        *tests,
    ]
    with log.open("w") as out:
        subprocess.run(cmd, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=TIMEOUT_S, check=False)
    return outcomes(junit, tests)


def check(src: pins.Source, logs: Path) -> list[dict[str, object]]:
    """Both runs for one checkout: one row per fix."""
    found = fixes(src.checkout)
    tests = [t for fix in found for t in fix.tests]
    seen: dict[str, dict[str, str]] = {}
    if tests:
        with checkouts.pristine_worktree(src, "repro-pristine-", built=True) as tree:
            for fix in found:
                for test in fix.tests:
                    git(tree, "apply", f"--include={test}", str(fix.patch.path))
            seen["pristine"] = run_pytest(src, tree, tests, logs / f"{src.checkout}-pristine.log")
        with checkouts.pristine_worktree(src, "repro-patched-", built=True) as tree:
            for patch in patches.for_checkout(src.checkout):
                git(tree, "apply", str(patch.path))
            seen["patched"] = run_pytest(src, tree, tests, logs / f"{src.checkout}-patched.log")
    rows: list[dict[str, object]] = []
    for fix in found:
        before = [seen["pristine"][t] for t in fix.tests] if fix.tests else []
        after = [seen["patched"][t] for t in fix.tests] if fix.tests else []
        ok = bool(fix.tests) and all(b in ("failed", "error") for b in before) and all(a == "passed" for a in after)
        rows.append(
            {"checkout": src.checkout, "patch": fix.patch.name, "tests": list(fix.tests), "pristine": before, "patched": after, "ok": ok}
        )
    return rows


def main(names: list[str]) -> int:
    """Run every checkout's fixes' tests (or those of the checkouts named); write
    REPRO_RESULTS_DIR/upstream-tests.json, the pytest logs to .repro/upstream-tests/."""
    out = knobs.path("REPRO_RESULTS_DIR")
    logs = ROOT / ".repro" / "upstream-tests"
    logs.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    chosen = [src for src in pins.sources() if not names or src.checkout in names]
    for src in chosen:
        if not src.path.is_dir():
            raise patches.PatchError(f"{src.checkout}/ is missing: run scripts/setup.sh first")
        print(f"{src.checkout}: pytest on the pristine {src.git_tag} and on the patched tree ...", flush=True)
    # The checkouts side by side: each run is one mostly single-threaded pytest, the machine has
    # two cores or more, and the trees share nothing.
    with ThreadPoolExecutor(max_workers=max(1, len(chosen))) as pool:
        rows = [row for found in pool.map(lambda src: check(src, logs), chosen) for row in found]
    (out / "upstream-tests.json").write_text(json.dumps(rows, indent=2) + "\n")
    for row in rows:
        verdict = "ok" if row["ok"] else "NOT OK"
        print(
            f"{verdict:6} {row['checkout']}/{row['patch']}: pristine {row['pristine'] or '(no test)'} -> patched {row['patched'] or '(no test)'}"
        )
    print(f"wrote {out / 'upstream-tests.json'}; pytest logs in {logs}")
    return 0 if all(row["ok"] for row in rows) else 1
