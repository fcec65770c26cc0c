"""The attribution matrix: the same prompts under no cache, vLLM APC, LMCache, and both;
which cache served each warm request, and whether any output left the no-cache baseline."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from reproduce_vllm_lmcache.report import judging

# configuration -> (connector, prefix caching); what a warm request's hits must come from.
CONFIGURATIONS = {
    "none": (False, False),
    "apc": (False, True),
    "lmcache": (True, False),
    "both": (True, True),
}
BASELINE = "none"


def expected_source(configuration: str) -> str:
    connector, apc = CONFIGURATIONS.get(configuration, (True, False))
    return "local" if apc else "external" if connector else "none"


def hit_source(r: dict[str, Any]) -> str:
    local, external = r["vllm_local_hit_tokens"], r["vllm_external_hit_tokens"]
    if local and not external:
        return "local"
    if external and not local:
        return "external"
    return "both" if local else "none"


def load_rounds(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    config: dict[str, Any] = {}
    rounds: list[dict[str, Any]] = []
    for path in sorted(run_dir.glob("rounds-*.json")):
        data = json.loads(path.read_text())
        config = config or data["config"]
        rounds += data["rounds"]
    return config, rounds


def transfer_mode_seen(log: Path) -> str | None:
    """The mode vLLM's worker reports when it creates the LMCache transfer context."""
    if not log.exists():
        return None
    found = re.findall(r"Creating transfer context \(device_type=\w+, mode=(\w+)\)", log.read_text(errors="replace"))
    return found[-1] if found else None


def data_path_seen(log: Path) -> str | None:
    if not log.exists():
        return None
    text = log.read_text(errors="replace")
    for marker, name in (("EngineDrivenContextShm", "shm"), ("EngineDrivenContextPickle", "pickle")):
        if f"Creating {marker}" in text:
            return name
    return None


def verdicts(rounds: list[dict[str, Any]], tolerance: float, logs: Path) -> list[dict[str, Any]]:
    baseline = {r["prompt"]: r for r in rounds if r["configuration"] == BASELINE and r["name"] == "cold"}
    out = []
    for r in rounds:
        ref = baseline.get(r["prompt"])
        div = judging.divergence(ref, r) if ref else None
        v: dict[str, Any] = {
            "configuration": r["configuration"],
            "prompt": r["prompt"],
            "round": r["name"],
            "hit_source": hit_source(r),
            "identical_to_baseline": ref is not None and div is None,
            "diverged_at_tie": judging.is_tie(div, tolerance),
            "divergence": div,
        }
        if r["name"] in ("warm", "restart"):
            v["expected_source"] = expected_source(r["configuration"].split("-")[0])
            # With both caches on, vLLM's own answers first; LMCache may add the whole chunks it
            # holds beyond vLLM's last full block (64-token chunks: 576 local + 63 external of 640).
            both_ok = r["configuration"] == "both" and v["hit_source"] == "both"
            v["source_ok"] = v["hit_source"] == v["expected_source"] or both_ok
        out.append(v)
    return out


def transfer_checks(configs: list[str], logs: Path) -> list[dict[str, Any]]:
    checks = []
    for name in configs:
        if not CONFIGURATIONS.get(name.split("-")[0], (False, False))[0]:
            continue
        log = logs / f"vllm-{name}.log"
        checks.append({"configuration": name, "transfer_mode": transfer_mode_seen(log), "data_path": data_path_seen(log)})
    return checks


ORDER = ["none", "apc", "lmcache", "both", "lmcache-restarted", "lmcache-engine-pickle", "lmcache-engine-shm"]


def ordered(configs: list[str]) -> list[str]:
    return sorted(dict.fromkeys(configs), key=lambda c: (ORDER.index(c) if c in ORDER else len(ORDER), c))


def table(rounds: list[dict[str, Any]], verdict_list: list[dict[str, Any]]) -> str:
    configs = ordered([r["configuration"] for r in rounds])
    keyed = {(v["configuration"], v["prompt"], v["round"]): v for v in verdict_list}
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for r in rounds:
        v = keyed[(r["configuration"], r["prompt"], r["name"])]
        src = {
            "local": f" L{r['vllm_local_hit_tokens']}",
            "external": f" E{r['vllm_external_hit_tokens']}",
            "both": f" L{r['vllm_local_hit_tokens']}+E{r['vllm_external_hit_tokens']}",
            "none": "",
        }[v["hit_source"]]
        same = "" if v["identical_to_baseline"] else (" =tie" if v["diverged_at_tie"] else " DIFF")
        cells.setdefault((r["prompt"], r["name"]), {})[r["configuration"]] = f"{r['ttft_s']:.3f}s{src}{same}"
    header = ["prompt", "round", *configs]
    rows = [header] + [[p, n, *(c.get(cfg, "") for cfg in configs)] for (p, n), c in cells.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(
        "TTFT per round; L = tokens from vLLM's prefix cache, E = tokens from LMCache; "
        "DIFF = output differs from the no-cache baseline (token by token), =tie = differs at an exact tie"
    )
    return "\n".join(lines)
