"""Terminal C: cold and warm requests against the running servers, proven by their metrics."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import httpx

from . import metrics, prompts
from .settings import Settings


# Alternatives recorded per generated token, to tell a real divergence from a tie.
TOP_LOGPROBS = 5


class ServerDown(RuntimeError):
    """A server the client needs does not answer; the message says which and how to start it."""


@dataclass
class Round:
    name: str
    prompt: str
    prompt_tokens: int
    ttft_s: float
    total_s: float
    output_text: str
    completion_tokens: int
    cached_tokens: int
    lmcache_l1_write_chunks: int
    lmcache_l1_read_chunks: int
    vllm_external_hit_tokens: int
    vllm_external_query_tokens: int
    vllm_local_hit_tokens: int
    output_tokens: list[str]
    top_logprobs: list[dict[str, float]]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def require_up(client: httpx.Client, name: str, url: str, script: str) -> None:
    try:
        client.get(url, timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        raise ServerDown(f"{name} is not answering at {url} ({exc.__class__.__name__}); start it with {script}") from exc


def served_model(client: httpx.Client, settings: Settings) -> str:
    models = client.get(f"{settings.vllm_url}/v1/models").json()["data"]
    return str(models[0]["id"])


def tokenizer(client: httpx.Client, settings: Settings, model: str) -> prompts.Tokenize:
    def tokenize(text: str) -> list[int]:
        body = {"model": model, "prompt": text, "add_special_tokens": False}
        response = client.post(f"{settings.vllm_url}/tokenize", json=body)
        response.raise_for_status()
        return list(response.json()["tokens"])

    return tokenize


def complete(client: httpx.Client, settings: Settings, model: str, ids: list[int], timeout: float) -> dict[str, object]:
    """One streamed greedy completion; returns text, TTFT, total time and usage."""
    body = {
        "model": model,
        "prompt": ids,
        "max_tokens": settings.max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "logprobs": TOP_LOGPROBS,
    }
    text, ttft, usage = [], None, {}
    tokens: list[str] = []
    top: list[dict[str, float]] = []
    started = time.perf_counter()
    with client.stream("POST", f"{settings.vllm_url}/v1/completions", json=body, timeout=timeout) as response:
        if response.status_code != 200:
            raise RuntimeError(f"vLLM answered {response.status_code}: {response.read().decode()[:500]}")
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or []:
                if ttft is None:
                    ttft = time.perf_counter() - started
                text.append(choice.get("text") or "")
                logprobs = choice.get("logprobs") or {}
                tokens += logprobs.get("tokens") or []
                top += [dict(t or {}) for t in logprobs.get("top_logprobs") or []]
            usage = chunk.get("usage") or usage
    total = time.perf_counter() - started
    return {
        "text": "".join(text),
        "ttft": ttft if ttft is not None else total,
        "total": total,
        "usage": usage,
        "tokens": tokens,
        "top_logprobs": top,
    }


def run_round(
    client: httpx.Client, settings: Settings, model: str, name: str, label: str, ids: list[int], timeout: float
) -> Round:
    before = metrics.settled(client, settings.lmcache_http_url, settings.vllm_url)
    result = complete(client, settings, model, ids, timeout)
    after = metrics.settled(client, settings.lmcache_http_url, settings.vllm_url)
    usage = result["usage"] if isinstance(result["usage"], dict) else {}
    details = usage.get("prompt_tokens_details") or {}
    return Round(
        name=name,
        prompt=label,
        prompt_tokens=int(usage.get("prompt_tokens", len(ids))),
        ttft_s=round(float(result["ttft"]), 4),  # type: ignore[arg-type]
        total_s=round(float(result["total"]), 4),  # type: ignore[arg-type]
        output_text=str(result["text"]),
        completion_tokens=int(usage.get("completion_tokens", 0)),
        cached_tokens=int(details.get("cached_tokens") or 0),
        lmcache_l1_write_chunks=after.delta(before, metrics.LMCACHE_WRITES),
        lmcache_l1_read_chunks=after.delta(before, metrics.LMCACHE_READS),
        vllm_external_hit_tokens=after.delta(before, metrics.VLLM_EXTERNAL_HITS),
        vllm_external_query_tokens=after.delta(before, metrics.VLLM_EXTERNAL_QUERIES),
        vllm_local_hit_tokens=after.delta(before, metrics.VLLM_LOCAL_HITS),
        output_tokens=list(result["tokens"]),  # type: ignore[call-overload]
        top_logprobs=list(result["top_logprobs"]),  # type: ignore[call-overload]
    )


def cold_warm(settings: Settings, nonce: str, timeout: float) -> tuple[str, list[Round]]:
    """For each prompt length: a never-seen prompt (cold), then the same prompt again (warm)."""
    with httpx.Client(timeout=30) as client:
        require_up(client, "the LMCache server", f"{settings.lmcache_http_url}/healthcheck", "scripts/start_lmcache.sh")
        require_up(client, "the vLLM server", f"{settings.vllm_url}/v1/models", "scripts/start_vllm.sh")
        model = served_model(client, settings)
        tokenize = tokenizer(client, settings, model)
        rounds: list[Round] = []
        for length in settings.prompt_tokens:
            label = f"p{length}"
            ids = prompts.build(tokenize, length, seed=f"{nonce}-{label}")
            for name in ("cold", "warm"):
                print(f"  {label} {name}: sending {len(ids)} tokens ...", flush=True)
                rounds.append(run_round(client, settings, model, name, label, ids, timeout))
                r = rounds[-1]
                print(
                    f"  {label} {name}: TTFT {r.ttft_s:.3f} s, total {r.total_s:.3f} s, "
                    f"LMCache chunks written {r.lmcache_l1_write_chunks} read {r.lmcache_l1_read_chunks}, "
                    f"external hit tokens {r.vllm_external_hit_tokens}",
                    flush=True,
                )
        return model, rounds
