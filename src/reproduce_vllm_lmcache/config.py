"""Knobs: defaults from ``defaults.env`` at the repository root, overridden by the environment.

Standard library only: setup runs this before the project environment exists.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS_FILE = ROOT / "defaults.env"


def parse_env_file(text: str) -> dict[str, str]:
    """Parse ``KEY=value`` lines; blank lines and ``#`` comments are skipped."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"{DEFAULTS_FILE.name}:{number}: expected KEY=value, got {raw!r}")
        values[key.strip()] = value.strip()
    return values


def defaults() -> dict[str, str]:
    return parse_env_file(DEFAULTS_FILE.read_text())


def get(key: str, environ: dict[str, str] | None = None) -> str:
    """The knob's value: the environment's if set, else the default from defaults.env."""
    env = os.environ if environ is None else environ
    if key in env:
        return env[key]
    known = defaults()
    if key not in known:
        raise KeyError(f"unknown knob {key}: add it to {DEFAULTS_FILE.name}")
    return known[key]


def path(key: str, environ: dict[str, str] | None = None) -> Path:
    """A path knob: ``~`` expanded, relative paths taken from the repository root."""
    value = Path(get(key, environ)).expanduser()
    return value if value.is_absolute() else ROOT / value


def resolved() -> dict[str, str]:
    """Every knob with the value in force now."""
    return {key: get(key) for key in defaults()}


def documented(text: str | None = None) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """defaults.env as reference: per section (a ``# --- name ---`` line), each knob with its
    default and the comment above it (one comment may describe the knobs right under it)."""
    sections: list[tuple[str, list[tuple[str, str, str]]]] = [("general", [])]
    comment: list[str] = []
    shared = ""
    for raw in (DEFAULTS_FILE.read_text() if text is None else text).splitlines():
        line = raw.strip()
        if line.startswith("# ---"):
            sections.append((line.strip("#- ").strip(), []))
            comment, shared = [], ""
        elif line.startswith("#"):
            comment.append(line[1:].strip())
        elif not line:
            comment, shared = [], ""
        else:
            key, _, value = line.partition("=")
            if comment:
                shared, comment = " ".join(comment), []
            sections[-1][1].append((key.strip(), value.strip(), shared))
    return [(name, knobs) for name, knobs in sections if knobs]


def knobs_markdown() -> str:
    """docs/knobs.md: every knob, its default and what it does, generated from defaults.env."""
    out = [
        "# Knobs",
        "",
        "Generated from [`defaults.env`](../defaults.env) by `.venv/bin/repro knobs --write` (a test",
        "checks it is current). Every knob can be overridden by an environment variable of the same",
        "name (`REPRO_PROMPT_TOKENS=640 scripts/run.sh`); values are checked before any server",
        "starts, and `.venv/bin/repro config` prints them all with the resolved settings.",
    ]
    for name, knobs in documented():
        out += ["", f"## {name}", "", "| knob | default | what it does |", "|---|---|---|"]
        out += [f"| `{key}` | `{value}` | {meaning.replace('|', '/')} |" for key, value, meaning in knobs]
    return "\n".join(out) + "\n"


def shell_exports(environ: dict[str, str] | None = None) -> str:
    """``export KEY=value`` lines, for bash (scripts/lib.sh), of every knob the environment does
    not set: the one parser of defaults.env for both languages. A leading ``~`` becomes $HOME."""
    import shlex

    env = os.environ if environ is None else environ
    home = env.get("HOME", str(Path.home()))
    lines = []
    for key, value in defaults().items():
        if key not in env:
            value = home + value[1:] if value == "~" or value.startswith("~/") else value
            lines.append(f"export {key}={shlex.quote(value)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python3 config.py: the exports; run before the project environment exists
    import sys

    try:
        sys.stdout.write(shell_exports())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
