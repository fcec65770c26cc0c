"""The attribution matrix: the same prompts under no cache, vLLM APC, LMCache, and both;
which cache served each warm request, and whether any output left the no-cache baseline."""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.report import judging

# configuration -> (connector, prefix caching); what a warm request's hits must come from.
CONFIGURATIONS = {
    "none": (False, False),
    "apc": (False, True),
    "lmcache": (True, False),
    "both": (True, True),
}
BASELINE = "none"


@dataclass(frozen=True)
class Step:
    """One vLLM start of scripts/matrix.sh (in this order; the shm one restarts LMCache with a
    shared-memory segment first): the cache setup, the transfer mode and the rounds it runs."""

    name: str
    connector: bool
    prefix_caching: bool
    transfer_mode: str = "lmcache_driven"
    rounds: str = "cold,warm"
    lmcache_shm: bool = False

    def line(self) -> str:
        return f"{self.name} {int(self.connector)} {int(self.prefix_caching)} {self.transfer_mode} {self.rounds} {int(self.lmcache_shm)}"


STEPS = (
    Step("none", False, False),
    Step("apc", False, True),
    Step("lmcache", True, False),
    Step("lmcache-restarted", True, False, rounds="restart"),
    Step("both", True, True),
    Step("lmcache-engine-pickle", True, False, "engine_driven"),
    Step("lmcache-engine-shm", True, False, "engine_driven", lmcache_shm=True),
)


def plan(selected: tuple[str, ...]) -> list[Step]:
    """The steps REPRO_MATRIX_CONFIGURATIONS selects, checked: the baseline is in, and the restart
    step has the run whose prompts it replays."""
    from reproduce_vllm_lmcache.knobs import KnobError

    known = [s.name for s in STEPS]
    unknown = [n for n in selected if n not in known]
    if unknown:
        raise KnobError(f"REPRO_MATRIX_CONFIGURATIONS: unknown {unknown}; choose from {', '.join(known)}")
    if BASELINE not in selected:
        raise KnobError("REPRO_MATRIX_CONFIGURATIONS must include none (the baseline every answer is compared with)")
    if "lmcache-restarted" in selected and "lmcache" not in selected:
        raise KnobError("REPRO_MATRIX_CONFIGURATIONS: lmcache-restarted needs lmcache (it replays lmcache's prompts)")
    return [s for s in STEPS if s.name in selected]


def step_of(configuration: str) -> Step | None:
    return next((s for s in STEPS if s.name == configuration), None)


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
            step = step_of(r["configuration"])
            v["expected_source"] = expected_source(step.name if step and step.name in CONFIGURATIONS else "lmcache")
            # With both caches on, vLLM's own answers first; LMCache may add the whole chunks it
            # holds beyond vLLM's last full block (64-token chunks: 576 local + 63 external of 640).
            both_ok = r["configuration"] == "both" and v["hit_source"] == "both"
            v["source_ok"] = v["hit_source"] == v["expected_source"] or both_ok
        out.append(v)
    return out


def transfer_checks(configs: list[str], logs: Path) -> list[dict[str, Any]]:
    checks = []
    for name in configs:
        step = step_of(name)
        if step is None or not step.connector:
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


def main(args: argparse.Namespace) -> int:
    """``repro matrix-report RUN_DIR``: merge a matrix run folder into matrix.json and print its table."""
    from reproduce_vllm_lmcache.report import results

    run_dir: Path = args.run_dir
    base, rounds = load_rounds(run_dir)
    tolerance = knobs.Requests.from_env().tie_tolerance
    found = verdicts(rounds, tolerance, run_dir / "logs")
    scenario_list = [s for p in sorted(run_dir.glob("scenarios-*.json")) for s in json.loads(p.read_text())["scenarios"]]
    configs = list(dict.fromkeys(r["configuration"] for r in rounds))
    transfers = transfer_checks(configs, run_dir / "logs")
    data = {"config": base, "rounds": rounds, "verdicts": found, "scenarios": scenario_list, "transfer_modes": transfers}
    path = results.write(run_dir, "matrix.json", data, latest=False)
    print(table(rounds, found))
    failures = [v for v in found if not v.get("source_ok", True) or not (v["identical_to_baseline"] or v["diverged_at_tie"])]
    for v in found:
        if "source_ok" in v:
            print(
                f"{'PASS' if v['source_ok'] else 'FAIL'} {v['configuration']} {v['prompt']} {v['round']}: hit from {v['hit_source']} (expected {v['expected_source']})"
            )
    for t in transfers:
        step = step_of(t["configuration"])
        want = step.transfer_mode if step else "lmcache_driven"
        ok = t["transfer_mode"] == want
        failures += [] if ok else [t]
        print(
            f"{'PASS' if ok else 'FAIL'} {t['configuration']}: vLLM log says mode={t['transfer_mode']} (data path {t['data_path'] or 'n/a'})"
        )
    failures += [s for s in scenario_list if not s["passed"]]
    for s in scenario_list:
        print(f"{'PASS' if s['passed'] else 'FAIL'} scenario {s['scenario']}: {s['detail']}")
    same = sum(1 for v in found if v["identical_to_baseline"])
    print(f"{same} of {len(found)} rounds token-identical to the no-cache baseline")
    print(f"recorded {path}")
    return 1 if failures else 0
