"""``repro patches``: the patch set with each patch's state, and ``repro patches export NAME``:
an upstream-ready report of one patch in ``docs/upstream/NAME.md``.

The report holds the patch's header (bug, what, why, effect, fitness), the minimal reproduction
(its ``Reproduce:`` lines), the before/after output the suite recorded in
``results/bugs.json`` (written by tests/test_faults.py under ``REPRO_TEST_RECORD=1``: one entry per patch and mode),
and the diff against the pristine release tag (the patch applied alone to the tag in a
temporary worktree). Standard library only.
"""

from __future__ import annotations

import json
from pathlib import Path

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.config import ROOT
from reproduce_vllm_lmcache.workspace import checkouts, patches, pins, upstream
from reproduce_vllm_lmcache.workspace.checkouts import git

DOCS_DIR = ROOT / "docs" / "upstream"


def bugs_file() -> Path:
    return knobs.path("REPRO_RESULTS_DIR") / "bugs.json"


def recorded() -> dict[str, dict[str, dict[str, object]]]:
    """What the suite saw per patch name and mode ("upstream", "all")."""
    path = bugs_file()
    return json.loads(path.read_text()) if path.exists() else {}


def record(name: str, mode: str, observation: dict[str, object]) -> None:
    """Keep one observation (merged into results/bugs.json; other entries stay)."""
    data = recorded()
    data.setdefault(name, {})[mode] = observation
    bugs_file().parent.mkdir(parents=True, exist_ok=True)
    bugs_file().write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def find(name: str) -> tuple[pins.Source, patches.Patch]:
    for src in pins.sources():
        for patch in patches.for_checkout(src.checkout):
            if name in (patch.name, patch.path.name):
                return src, patch
    known = ", ".join(p.name for s in pins.sources() for p in patches.for_checkout(s.checkout))
    raise patches.PatchError(f"no patch named {name!r}; the set: {known}")


def rows() -> list[dict[str, str]]:
    """One row per patch: checkout, name, its state in the checkout and in the upstream tree."""
    out = []
    for src in pins.sources():
        tree = upstream.UPSTREAM_DIR / src.checkout
        own_tree = bool(upstream.dropped(src))
        for patch in patches.for_checkout(src.checkout):
            in_checkout = patches.state(src.path, patch).value if src.path.is_dir() else "no checkout"
            if not patch.needed_to_run:
                in_tree = "left out (shows the before)"
            elif not own_tree:
                in_tree = "kept (upstream mode runs this checkout)"
            elif (tree / ".git").exists():
                in_tree = patches.state(tree, patch).value
            else:
                in_tree = "kept (tree not made yet)"
            out.append(
                {
                    "checkout": src.checkout,
                    "patch": patch.name,
                    "checkout state": in_checkout,
                    "REPRO_PATCHES=upstream": in_tree,
                    "fixes": patch.header("Bug") or "-",
                }
            )
    return out


def table() -> str:
    data = rows()
    keys = list(data[0]) if data else []
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(r[k] for k in keys) + " |" for r in data]
    return "\n".join(lines)


def pristine_diff(src: pins.Source, patch: patches.Patch) -> tuple[str, bool]:
    """The patch's diff against the pristine tag, and whether it applies there alone."""
    with checkouts.pristine_worktree(src, "repro-export-") as tree:
        alone = git(tree, "apply", "--index", str(patch.path), check=False).returncode == 0
        if not alone:  # it needs an earlier workspace patch: show it on top of those
            for earlier in patches.for_checkout(src.checkout):
                if earlier == patch:
                    break
                patches.apply(tree, earlier)
            git(tree, "apply", "--index", str(patch.path))
        return git(tree, "diff", "--cached").stdout, alone


def _observation(seen: dict[str, object] | None) -> str:
    if not seen:
        return "(not recorded yet: run `REPRO_TEST_RECORD=1 scripts/test.sh tests/test_faults.py`)"
    return "\n".join(f"{k}: {v}" for k, v in seen.items())


def _unit_test(checkout: str, name: str) -> str:
    """The fix's upstream-style test files and what `repro patches test` last saw."""
    path = knobs.path("REPRO_RESULTS_DIR") / "upstream-tests.json"
    rows = [r for r in json.loads(path.read_text()) if r["patch"] == name and r["checkout"] == checkout] if path.exists() else []
    if not rows:
        return "(not run yet: `repro patches test`)"
    row = rows[0]
    files = ", ".join(f"`{checkout}/{t}`" for t in row["tests"]) or "(none)"
    return (
        f"{files}, part of the diff below. `repro patches test` ran it on the pristine release: "
        f"{', '.join(row['pristine'])}; on the patched tree: {', '.join(row['patched'])} (`results/upstream-tests.json`)."
    )


def export(name: str) -> Path:
    src, patch = find(name)
    diff, alone = pristine_diff(src, patch)
    seen = recorded().get(patch.name, {})
    repro = [line for line in patch.path.read_text().splitlines() if line.startswith("Reproduce: ")]
    commands = "\n".join(line.removeprefix("Reproduce: ") for line in repro) or "(no Reproduce: lines in the header)"
    base = f"{src.key} {src.version} (tag {src.git_tag})"
    text = f"""# {patch.header("Bug") or patch.reason}

Against {base}. Written by `repro patches export {patch.name}` from `patches/{src.checkout}/{patch.path.name}`
and the suite's record in `results/bugs.json`.

## What goes wrong, and why

{patch.reason}

## Reproduce

On a machine with this workspace (`scripts/setup.sh` once), `REPRO_PATCHES=upstream` runs the
pristine release; without it the fix runs:

```bash
{commands}
```

Automated, both modes in one run (recorded into `results/bugs.json`): `REPRO_TEST_RECORD=1 scripts/test.sh tests/test_faults.py`.

## Before (pristine {src.version})

```
{_observation(seen.get("upstream"))}
```

## After (with the patch)

```
{_observation(seen.get("all"))}
```

## Unit test in {src.checkout}'s own test suite

{_unit_test(src.checkout, patch.name)}

## The change

{patch.header("What")}

Measured effect: {patch.header("Effect")}

Fitness for upstream: {patch.header("Upstream")}

## Diff against {src.git_tag}

{"Applies to the pristine tag alone." if alone else "Needs the workspace's earlier patches to apply (the diff below is on top of them)."}

```diff
{diff.rstrip()}
```
"""
    DOCS_DIR.mkdir(parents=True, exist_ok=True)
    out = DOCS_DIR / f"{patch.name}.md"
    out.write_text(text)
    return out
