"""The docs: a short front door, the pages it promises, links that resolve, and every error
message the scripts print explained in docs/troubleshooting.md."""

from __future__ import annotations

import re

import pytest

from reproduce_vllm_lmcache.config import ROOT

PAGES = (
    "data-path",
    "experiments",
    "benchmarks",
    "tiers",
    "knobs",
    "guards-and-faults",
    "troubleshooting",
    "setup",
    "tests",
    "layout",
    "startup",
    "warm-path",
    "nodes",
    "soak",
)


def test_readme_is_a_front_door_of_at_most_200_lines() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for page in PAGES:
        assert f"docs/{page}.md" in readme, f"README does not link docs/{page}.md"


@pytest.mark.parametrize("doc", ["README.md", *(f"docs/{p}.md" for p in PAGES)])
def test_relative_links_resolve(doc) -> None:
    path = ROOT / doc
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
        if "://" in target:
            continue
        assert (path.parent / target).exists(), f"{doc} links {target}, which does not exist"


def messages() -> list[str]:
    """The fixed text of every `die "..."` in scripts/ (up to its first variable)."""
    found = []
    for script in sorted((ROOT / "scripts").glob("*.sh")):
        for message in re.findall(r'\bdie "([^"]+)"', script.read_text()):
            fixed = re.split(r"\$", message)[0].strip(" (:'")
            if len(fixed) >= 12:
                found.append(fixed)
    return found


def test_troubleshooting_explains_every_error_the_scripts_stop_with() -> None:
    page = (ROOT / "docs" / "troubleshooting.md").read_text()
    missing = [m for m in messages() if m not in page]
    assert len(messages()) > 10 and not missing, f"not in docs/troubleshooting.md: {missing}"


# The repository's own top-level entries: a backticked path that starts with one names a file of
# this repository (generated and per-run folders are not in a fresh clone; placeholders are not paths).
TOP = ("scripts/", "src/", "tests/", "docs/", "patches/", ".ci/", "defaults.env", "pins.toml", "pyproject.toml", "uv.lock", "results/")
GENERATED = ("results/runs/", ".repro/", "LMCache/", "vllm/", "models/", ".venv/", "wheelhouse/")


def backticked_paths(text: str) -> set[str]:
    found = set()
    for span in re.findall(r"`([^`\n]+)`", text):
        for word in span.split():
            word = word.strip("\"'(),;:").split("::")[0]
            if not word.startswith(TOP) or word.startswith(GENERATED) or re.search(r"[*<>{}$]|\.\.\.|NAME|\bN\b", word):
                continue
            found.add(word.rstrip("."))
    return found


@pytest.mark.parametrize("doc", ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md"))])
def test_backticked_repository_paths_exist(doc) -> None:
    """`scripts/x.sh`, `src/...`, `tests/test_y.py` and the like in the docs name real files."""
    missing = sorted(p for p in backticked_paths((ROOT / doc).read_text()) if not (ROOT / p).exists())
    assert not missing, f"{doc} names paths that do not exist: {missing}"
