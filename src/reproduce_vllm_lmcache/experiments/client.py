"""Terminal C: cold and warm requests against the running servers, proven by their metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import requests

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.experiments import prompts
from reproduce_vllm_lmcache.servers import http_client, metrics
from reproduce_vllm_lmcache.servers.settings import ServerDown, Settings

# Alternatives recorded per generated token, to tell a real divergence from a tie.
TOP_LOGPROBS = 5


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
    configuration: str = ""
    # vLLM's own view of the request (histogram deltas): TTFT, time queued, time in prefill.
    vllm_server_ttft_s: float = 0.0
    vllm_queue_s: float = 0.0
    vllm_prefill_s: float = 0.0
    vllm_decode_s: float = 0.0
    vllm_lookup_s: float = 0.0
    # Wall clock (epoch seconds) when the client sent the request.
    sent_at: float = 0.0
    # LMCache's L2 tier and L1 eviction during the request (chunks).
    lmcache_l2_stored_chunks: int = 0
    lmcache_l2_loaded_chunks: int = 0
    lmcache_l1_evicted_chunks: int = 0
    # Lookups LMCache received, and read locks it released unread (patch 0008), during the request.
    lmcache_lookups: int = 0
    lmcache_l1_released_chunks: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def require_up(client: requests.Session, name: str, url: str, script: str) -> None:
    try:
        client.get(url, timeout=5).raise_for_status()
    except requests.RequestException as exc:
        raise ServerDown(f"{name} is not answering at {url} ({exc.__class__.__name__}); start it with {script}") from exc


def served_model(client: requests.Session, settings: Settings) -> str:
    models = client.get(f"{settings.vllm_url}/v1/models", timeout=30).json()["data"]
    return str(models[0]["id"])


def tokenizer(client: requests.Session, settings: Settings, model: str) -> prompts.Tokenize:
    def tokenize(text: str) -> list[int]:
        body = {"model": model, "prompt": text, "add_special_tokens": False}
        response = client.post(f"{settings.vllm_url}/tokenize", json=body, timeout=30)
        response.raise_for_status()
        return list(response.json()["tokens"])

    return tokenize


def _stream(client: requests.Session, url: str, body: dict[str, object], timeout: float, chat: bool) -> dict[str, object]:
    """POST a streamed request; collect text, per-token logprobs, TTFT, total time, usage."""
    text: list[str] = []
    tokens: list[str] = []
    top: list[dict[str, float]] = []
    ttft, usage = None, {}
    sent_at = time.time()
    started = time.perf_counter()
    with client.post(url, json=body, timeout=timeout, stream=True) as response:
        if response.status_code != 200:
            raise RuntimeError(f"vLLM answered {response.status_code}: {response.text[:500]}")
        # chunk_size=None: each server-sent event as it arrives (a fixed size would wait for more).
        for raw in response.iter_lines(chunk_size=None):
            line = raw.decode()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or []:
                if ttft is None:
                    ttft = time.perf_counter() - started
                logprobs = choice.get("logprobs") or {}
                if chat:
                    text.append((choice.get("delta") or {}).get("content") or "")
                    for entry in logprobs.get("content") or []:
                        tokens.append(entry["token"])
                        top.append({t["token"]: t["logprob"] for t in entry.get("top_logprobs") or []})
                else:
                    text.append(choice.get("text") or "")
                    tokens += logprobs.get("tokens") or []
                    top += [dict(t or {}) for t in logprobs.get("top_logprobs") or []]
            usage = chunk.get("usage") or usage
    total = time.perf_counter() - started
    return {
        "sent_at": sent_at,
        "text": "".join(text),
        "ttft": ttft if ttft is not None else total,
        "total": total,
        "usage": usage,
        "tokens": tokens,
        "top_logprobs": top,
    }


def complete(
    client: requests.Session,
    settings: Settings,
    model: str,
    ids: list[int],
    timeout: float,
    max_tokens: int | None = None,
    salt: str | None = None,
    kv_transfer_params: dict[str, object] | None = None,
) -> dict[str, object]:
    """One streamed greedy completion of a token-id prompt (settings.max_tokens output tokens
    unless max_tokens says otherwise), under the tenant ``salt`` (vLLM's cache_salt) if given;
    ``kv_transfer_params``: per-request settings for the connector (LMCache's ``lmcache.*``)."""
    body: dict[str, object] = {
        "model": model,
        "prompt": ids,
        "max_tokens": settings.max_tokens if max_tokens is None else max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "logprobs": TOP_LOGPROBS,
    }
    if salt is not None:
        body["cache_salt"] = salt
    if kv_transfer_params is not None:
        body["kv_transfer_params"] = kv_transfer_params
    return _stream(client, f"{settings.vllm_url}/v1/completions", body, timeout, chat=False)


def chat(client: requests.Session, settings: Settings, model: str, messages: list[dict[str, str]], timeout: float) -> dict[str, object]:
    """One streamed greedy chat completion."""
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": settings.max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "logprobs": True,
        "top_logprobs": TOP_LOGPROBS,
    }
    return _stream(client, f"{settings.vllm_url}/v1/chat/completions", body, timeout, chat=True)


def counters(client: requests.Session, settings: Settings) -> metrics.Counters:
    lmcache_url = settings.lmcache_http_url if settings.connector else None
    return metrics.settled(client, lmcache_url, settings.vllm_url)


def measure(client: requests.Session, settings: Settings, name: str, label: str, send: Callable[[], dict[str, object]]) -> Round:
    """Run ``send`` (one request) between two settled scrapes of both servers' counters."""
    before = counters(client, settings)
    result = send()
    after = counters(client, settings)
    usage = result["usage"] if isinstance(result["usage"], dict) else {}
    details = usage.get("prompt_tokens_details") or {}
    return Round(
        name=name,
        prompt=label,
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
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
        vllm_server_ttft_s=round(after.change(before, metrics.VLLM_SERVER_TTFT), 4),
        vllm_queue_s=round(after.change(before, metrics.VLLM_QUEUE), 4),
        vllm_prefill_s=round(after.change(before, metrics.VLLM_PREFILL), 4),
        vllm_decode_s=round(after.change(before, metrics.VLLM_DECODE), 4),
        vllm_lookup_s=round(after.change(before, metrics.VLLM_LOOKUP), 4),
        sent_at=float(result["sent_at"]),  # type: ignore[arg-type]
        lmcache_l2_stored_chunks=after.delta(before, metrics.LMCACHE_L2_STORED),
        lmcache_l2_loaded_chunks=after.delta(before, metrics.LMCACHE_L2_LOADED),
        lmcache_l1_evicted_chunks=after.delta(before, metrics.LMCACHE_L1_EVICTED),
        lmcache_lookups=after.delta(before, metrics.LMCACHE_LOOKUPS),
        lmcache_l1_released_chunks=after.delta(before, metrics.LMCACHE_RELEASED),
    )


def report_round(r: Round) -> None:
    print(
        f"  {r.prompt} {r.name}: TTFT {r.ttft_s:.3f} s, total {r.total_s:.3f} s, "
        f"LMCache lookups {r.lmcache_lookups}, chunks written {r.lmcache_l1_write_chunks} read {r.lmcache_l1_read_chunks}"
        f" released {r.lmcache_l1_released_chunks}, "
        f"hit tokens external {r.vllm_external_hit_tokens} local {r.vllm_local_hit_tokens}",
        flush=True,
    )


class Session:
    """A connection to the running servers: the served model and its tokenizer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = http_client.session()
        if settings.connector:
            require_up(self.client, "the LMCache server", f"{settings.lmcache_http_url}/healthcheck", "scripts/start_lmcache.sh")
        require_up(self.client, "the vLLM server", f"{settings.vllm_url}/v1/models", "scripts/start_vllm.sh")
        self.model = served_model(self.client, settings)
        self.tokenize = tokenizer(self.client, settings, self.model)

    def warmup(self) -> None:
        """One unmeasured request of REPRO_WARMUP_TOKENS (the first request after a start pays
        one-off costs: 16 s instead of 0.6 s for 640 tokens)."""
        tokens = int(knobs.text("REPRO_WARMUP_TOKENS"))
        if tokens:
            self.round("warmup", f"p{tokens}", self.prompt(tokens, seed=f"warmup-{time.time_ns()}"), 600)

    def prime(self) -> float:
        """The one-off work of a fresh vLLM (the sampler compiles its logprobs kernel on the first
        request that asks for logprobs): one request as the client sends them, but shorter than
        one LMCache chunk, so nothing is stored, and with two output tokens (one sampled after the
        prefill, one after a decode step): more tokens only add decode time. Returns its seconds."""
        ids = self.tokenize("The capital of France is")[: max(1, self.settings.chunk_size - 1)]
        started = time.perf_counter()
        complete(self.client, self.settings, self.model, ids, float(knobs.text("REPRO_REQUEST_TIMEOUT")), max_tokens=2)
        return time.perf_counter() - started

    def probe_lookup(self) -> None:
        """One request that makes the connector look its prompt up in LMCache and stores
        nothing: a fresh prompt of one whole chunk and one token (shorter prompts, or ones vLLM's
        own cache covers, are not looked up at all), with LMCache told to store none of it
        (``lmcache.max_offload_tokens`` 0; its keys differ from every real request's)."""
        ids = self.prompt(self.settings.chunk_size + 1, seed=f"probe-{time.time_ns()}")
        complete(
            self.client,
            self.settings,
            self.model,
            ids,
            float(knobs.text("REPRO_REQUEST_TIMEOUT")),
            max_tokens=1,
            kv_transfer_params={"lmcache.max_offload_tokens": 0},
        )

    def prompt(self, tokens: int, seed: str) -> list[int]:
        return prompts.build(self.tokenize, tokens, seed)

    def round(self, name: str, label: str, ids: list[int], timeout: float, salt: str | None = None) -> Round:
        print(f"  {label} {name}: sending {len(ids)} tokens{f' (cache_salt {salt})' if salt else ''} ...", flush=True)
        r = measure(
            self.client, self.settings, name, label, lambda: complete(self.client, self.settings, self.model, ids, timeout, salt=salt)
        )
        report_round(r)
        return r

    def chat_round(self, name: str, label: str, messages: list[dict[str, str]], timeout: float) -> Round:
        print(f"  {label} {name}: sending {len(messages)} messages ...", flush=True)
        r = measure(self.client, self.settings, name, label, lambda: chat(self.client, self.settings, self.model, messages, timeout))
        report_round(r)
        return r

    def close(self) -> None:
        self.client.close()
