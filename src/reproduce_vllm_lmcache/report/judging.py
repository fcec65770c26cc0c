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


def top2_margin(top: dict[str, float]) -> float | None:
    """Logprob gap between the best and second-best token (0.0 is an exact tie)."""
    best = sorted(top.values(), reverse=True)
    return round(best[0] - best[1], 6) if len(best) >= 2 else None


def divergence(reference: dict[str, Any], other: dict[str, Any]) -> dict[str, Any] | None:
    """Where two greedy outputs first differ, token by token, and how close the choice was.

    ``margin_reference`` is, in the reference run's own distribution at that position, the
    logprob of its token minus that of the other run's token (``margin_other`` the same from
    the other side); 0.0 is an exact tie, which greedy decoding may break either way under a
    different rounding order. When a run stopped there, the top-1/top-2 gap stands in.
    """
    a, b = reference.get("output_tokens", []), other.get("output_tokens", [])
    if a == b and reference["output_text"] == other["output_text"]:
        return None
    index = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))

    def token(tokens: list[str]) -> str | None:
        return tokens[index] if index < len(tokens) else None  # None: the run stopped here

    def margin(run: dict[str, Any], mine: str | None, theirs: str | None) -> float | None:
        tops = run.get("top_logprobs", [])
        if index >= len(tops):
            return None
        top = tops[index]
        if mine in top and theirs in top:
            return round(top[mine] - top[theirs], 6)
        return top2_margin(top)

    ref_token, other_token = token(a), token(b)
    return {
        "index": index,
        "reference_token": ref_token,
        "other_token": other_token,
        "margin_reference": margin(reference, ref_token, other_token),
        "margin_other": margin(other, other_token, ref_token),
    }


def is_tie(div: dict[str, Any] | None, tolerance: float) -> bool:
    if div is None:
        return False
    margins = [m for m in (div["margin_reference"], div["margin_other"]) if m is not None]
    return bool(margins) and min(margins) <= tolerance


def verdicts(rounds: list[dict[str, Any]], tie_tolerance: float = 0.0) -> list[dict[str, Any]]:
    out = []
    for cold, warm in pairs(rounds):
        div = divergence(cold, warm)
        out.append(
            {
                "prompt": cold["prompt"],
                "prompt_tokens": cold["prompt_tokens"],
                "stored_on_cold": cold["lmcache_l1_write_chunks"] > 0,
                "hit_on_warm": warm["lmcache_l1_read_chunks"] > 0 and warm["vllm_external_hit_tokens"] > 0,
                "output_identical": div is None,
                "divergence": div,
                "diverged_at_tie": is_tie(div, tie_tolerance),
                "speedup": round(cold["ttft_s"] / warm["ttft_s"], 2) if warm["ttft_s"] > 0 else None,
            }
        )
    return out


def same_answer(v: dict[str, Any]) -> bool:
    """Token-identical, or the first difference is a tie within the tolerance."""
    return bool(v["output_identical"] or v.get("diverged_at_tie"))


def passed(verdict_list: list[dict[str, Any]]) -> bool:
    ok = all(v["stored_on_cold"] and v["hit_on_warm"] and same_answer(v) for v in verdict_list)
    return bool(verdict_list) and ok


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
                identity(v) if warm else "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def identity(v: dict[str, Any]) -> str:
    if v["output_identical"]:
        return "yes"
    div = v["divergence"]
    return f"tie@{div['index']}" if v.get("diverged_at_tie") else f"NO@{div['index']}"


def verdict_lines(verdict_list: list[dict[str, Any]], lmcache: bool = True) -> list[str]:
    """PASS/FAIL lines; without the connector only the identity verdict applies."""

    def mark(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    lines = []
    for v in verdict_list:
        p = f"{v['prompt']} ({v['prompt_tokens']} tokens)"
        if lmcache:
            lines.append(f"{mark(v['stored_on_cold'])} {p}: stored on cold (LMCache chunks written > 0)")
            lines.append(f"{mark(v['hit_on_warm'])} {p}: hit on warm (LMCache chunks read > 0, vLLM external hit tokens > 0)")
        if v["output_identical"]:
            lines.append(f"PASS {p}: output identical cold vs warm (token by token)")
        else:
            d = v["divergence"]
            lines.append(
                f"{mark(same_answer(v))} {p}: output differs from token {d['index']}: cold {d['reference_token']!r} "
                f"vs warm {d['other_token']!r} (None = stopped); logprob margin of each run's choice there: cold "
                f"{d['margin_reference']}, warm {d['margin_other']}"
                + (" - a tie, either token is a greedy answer" if v.get("diverged_at_tie") else "")
            )
    return lines


def history_row(folder: str, data: dict[str, Any]) -> str:
    """One markdown row of a recorded run: config in brief, cold -> warm TTFT per prompt."""
    cfg = data["config"]
    cells = []
    for v, (cold, warm) in zip(verdicts(data["rounds"]), pairs(data["rounds"])):
        ok = identity(v)
        hit = "hit" if v["hit_on_warm"] else "MISS"
        cells.append(
            f"{v['prompt_tokens']} tok: {cold['ttft_s']:.2f} -> {warm['ttft_s']:.2f} s "
            f"({v['speedup']}x, {cold['lmcache_l1_write_chunks']}/{warm['lmcache_l1_read_chunks']} chunks, {hit}, identical {ok})"
        )
    mode = "eager" if cfg.get("enforce_eager") else "compiled"
    apc = "APC on" if cfg.get("prefix_caching") else "APC off"
    setup = f"{cfg.get('dtype')}, {mode}, {apc}, {cfg.get('transfer_mode')}, chunk {cfg.get('chunk_size')}"
    return f"| `{folder}` | {setup} | " + "<br>".join(cells) + " |"


def history(runs: list[tuple[str, dict[str, Any]]]) -> str:
    lines = ["| run | setup | cold -> warm TTFT (speedup, chunks stored/read, hit, output identical) |", "|---|---|---|"]
    lines += [history_row(folder, data) for folder, data in runs]
    return "\n".join(lines)
