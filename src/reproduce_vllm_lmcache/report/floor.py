"""The physical floor of a warm request: what it cannot go below on this machine.

A warm request must still (1) go through the HTTP front end, schedule and run one forward step
(measured as the TTFT of a one-token prompt), (2) copy the hit tokens' KV into vLLM's cache
(KV bytes / measured copy bandwidth), and (3) recompute the tokens not covered by full chunks
(tail tokens / measured prefill rate of the same prompt length, cold).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def kv_bytes_per_token(cfg: dict[str, object], dtype: str) -> int:
    """Keys and values of every layer for one token: 2 x layers x KV heads x head dim x bytes."""
    layers = int(cfg["num_hidden_layers"])  # type: ignore[call-overload]
    heads = int(cfg.get("num_key_value_heads") or cfg["num_attention_heads"])  # type: ignore[call-overload]
    head_dim = cfg.get("head_dim") or int(cfg["hidden_size"]) // int(cfg["num_attention_heads"])  # type: ignore[call-overload]
    return 2 * layers * heads * int(head_dim) * DTYPE_BYTES[dtype]  # type: ignore[call-overload]


def model_config(model: str) -> dict[str, object]:
    local = Path(model) / "config.json"
    if local.is_file():
        return dict(json.loads(local.read_text()))
    from transformers import AutoConfig  # a Hugging Face id: needs the Hub or its local cache

    return dict(AutoConfig.from_pretrained(model).to_dict())


def copy_bandwidth(nbytes: int = 256 << 20, repeats: int = 7) -> float:
    """Bytes per second of one large in-memory copy (torch, as vLLM and LMCache copy KV)."""
    import torch

    src = torch.ones(nbytes // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)  # touch the pages once
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - started)
    return nbytes / statistics.median(times)


@dataclass(frozen=True)
class Machine:
    """What the floor is built from, measured once per server configuration."""

    kv_bytes_per_token: int
    copy_bytes_per_s: float
    one_token_ttft_s: float
    http_rtt_s: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def floor(machine: Machine, prompt_tokens: int, hit_tokens: int, cold_ttft_s: float) -> dict[str, float]:
    """The floor of a warm request and its parts, in seconds."""
    prefill_rate = prompt_tokens / cold_ttft_s if cold_ttft_s > 0 else float("inf")
    kv_copy = hit_tokens * machine.kv_bytes_per_token / machine.copy_bytes_per_s
    tail = max(prompt_tokens - hit_tokens, 0) / prefill_rate
    return {
        "floor_s": round(machine.one_token_ttft_s + kv_copy + tail, 4),
        "floor_one_token_s": round(machine.one_token_ttft_s, 4),
        "floor_kv_copy_s": round(kv_copy, 4),
        "floor_tail_s": round(tail, 4),
        "tail_tokens": max(prompt_tokens - hit_tokens, 0),
    }
