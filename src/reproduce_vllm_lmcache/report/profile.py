"""Summaries of py-spy profiles (``--format raw``: one ``frame;frame;... count`` line per stack):
where the processes spent their on-CPU samples."""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# py-spy --subprocesses puts "process PID:"cmdline"" first and "thread (0x..)" frames into stacks.
META = re.compile(r"^(process \d+:|thread \(0x[0-9a-fA-F]+\))")


@dataclass(frozen=True)
class Summary:
    samples: int
    inclusive: Counter[str]  # samples with the frame anywhere on the stack
    leaf: Counter[str]  # samples with the frame on top
    processes: Counter[str]


def function(frame: str) -> str:
    """``name (path/to/file.py:123)`` -> ``name (file.py)``: lines merged, path shortened."""
    m = re.match(r"^(.*) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    name, path = m.groups()
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short})"


def process_name(frame: str) -> str:
    m = re.match(r'^process \d+:"?(.*?)"?$', frame)
    words = (m.group(1) if m else frame).split()
    return " ".join(words[:3])[:60]


def summarize(lines: list[str]) -> Summary:
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    processes: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        if frames[0].startswith("process "):
            processes[process_name(frames[0])] += n
        names = [function(f) for f in frames if not META.match(f)]
        for name in set(names):
            inclusive[name] += n
        if names:
            leaf[names[-1]] += n
    return Summary(total, inclusive, leaf, processes)


def report(summary: Summary, top: int = 20) -> str:
    if not summary.samples:
        return "no samples (was anything running?)"

    def pct(n: int) -> str:
        return f"{100 * n / summary.samples:5.1f} %"

    lines = [f"{summary.samples} on-CPU samples"]
    if summary.processes:
        lines.append("by process:")
        lines += [f"  {pct(n)}  {name}" for name, n in summary.processes.most_common(top)]
    lines.append("by function, inclusive (on the stack):")
    lines += [f"  {pct(n)}  {name}" for name, n in summary.inclusive.most_common(top)]
    lines.append("by function, self (on top of the stack):")
    lines += [f"  {pct(n)}  {name}" for name, n in summary.leaf.most_common(top)]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """``repro profile-report RUN_DIR``: top functions of the py-spy profiles in a run folder."""
    found = sorted(args.run_dir.glob("*.pyspy.txt"))
    if not found:
        raise FileNotFoundError(f"no *.pyspy.txt in {args.run_dir}")
    for path in found:
        print(f"=== {path.name.split('.')[0]} ({path})")
        print(report(summarize(path.read_text().splitlines())))
    return 0
