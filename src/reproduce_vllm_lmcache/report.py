"""Verdicts and the printed table of a cold/warm run."""

from __future__ import annotations

from typing import Any


def pairs(rounds: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(cold, warm) rounds of each prompt, in order."""
    cold: dict[str, dict[str, Any]] = {}
    found = []
    for r in rounds:
        if r["name"] == "cold":
            cold[r["prompt"]] = r
        elif r["name"] == "warm" and r["prompt"] in cold:
            found.append((cold[r["prompt"]], r))
    return found


def verdicts(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for cold, warm in pairs(rounds):
        out.append(
            {
                "prompt": cold["prompt"],
                "prompt_tokens": cold["prompt_tokens"],
                "stored_on_cold": cold["lmcache_l1_write_chunks"] > 0,
                "hit_on_warm": warm["lmcache_l1_read_chunks"] > 0 and warm["vllm_external_hit_tokens"] > 0,
                "output_identical": cold["output_text"] == warm["output_text"],
                "speedup": round(cold["ttft_s"] / warm["ttft_s"], 2) if warm["ttft_s"] > 0 else None,
            }
        )
    return out


def passed(verdict_list: list[dict[str, Any]]) -> bool:
    keys = ("stored_on_cold", "hit_on_warm", "output_identical")
    return bool(verdict_list) and all(v[k] for v in verdict_list for k in keys)


def table(rounds: list[dict[str, Any]]) -> str:
    speedups = {v["prompt"]: v for v in verdicts(rounds)}
    header = ("round", "prompt", "tokens", "TTFT s", "total s", "speedup", "chunks stored/read", "ext hit tok", "identical")
    rows = [header]
    for r in rounds:
        v = speedups.get(r["prompt"])
        warm = r["name"] == "warm" and v is not None
        rows.append(
            (
                r["name"],
                r["prompt"],
                str(r["prompt_tokens"]),
                f"{r['ttft_s']:.3f}",
                f"{r['total_s']:.3f}",
                f"{v['speedup']:.1f}x" if warm and v["speedup"] else "",
                f"{r['lmcache_l1_write_chunks']}/{r['lmcache_l1_read_chunks']}",
                str(r["vllm_external_hit_tokens"]),
                ("yes" if v["output_identical"] else "NO") if warm else "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict_lines(verdict_list: list[dict[str, Any]]) -> list[str]:
    def mark(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    lines = []
    for v in verdict_list:
        p = f"{v['prompt']} ({v['prompt_tokens']} tokens)"
        lines.append(f"{mark(v['stored_on_cold'])} {p}: stored on cold (LMCache chunks written > 0)")
        lines.append(f"{mark(v['hit_on_warm'])} {p}: hit on warm (LMCache chunks read > 0, vLLM external hit tokens > 0)")
        lines.append(f"{mark(v['output_identical'])} {p}: output identical cold vs warm")
    return lines
