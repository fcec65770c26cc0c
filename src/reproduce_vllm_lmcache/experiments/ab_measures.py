"""What one block of an A/B measures (scripts/ab.sh), in both arms, interleaved: the dev loop's
cold/warm pair on a fresh prompt (with the warm request repeated, alternating arms), or one
measured pass of a workload point per arm. A block returns, per arm, each metric's samples
(lists aligned across the arms: sample i of A was taken next to sample i of B), the checks
(was the cache used, did every request succeed) and the answer compared across the arms."""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.report.ab import METRICS as METRICS
from reproduce_vllm_lmcache.servers.settings import Settings


@dataclass
class Sample:
    metrics: dict[str, list[float]] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)
    answer: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    def add(self, metric: str, value: float) -> None:
        self.metrics.setdefault(metric, []).append(round(value, 5))


class Measure(Protocol):
    metrics: tuple[str, ...]

    def prepare(self, arm: str) -> None: ...

    def block(self, order: list[str], index: int, rng: random.Random) -> dict[str, Sample]: ...

    def close(self) -> None: ...


class Pairs:
    """Per block, one fresh prompt of REPRO_AB_PROMPT_TOKENS, the same in both arms (their LMCache
    servers are separate and cleared per block, so they do the same work): a cold request in each
    arm, a first warm one (both with the servers' counters: stored? hit?), then
    REPRO_AB_WARM_REPEATS more warm requests alternating between the arms, each pair in a random
    order, one output token each: warm TTFT is where the cache's work shows, and its neighbours
    in time share the machine's state, so pairs of them cancel its drift."""

    metrics = ("ttft_cold", "ttft_warm", "e2e_cold", "e2e_warm")
    headline = "ttft_warm"

    def __init__(self, settings: dict[str, Settings], nonce: str) -> None:
        from reproduce_vllm_lmcache.experiments import client

        self.client = client
        self.sessions = {arm: client.Session(s) for arm, s in settings.items()}
        self.tokens = knobs.integer("REPRO_AB_PROMPT_TOKENS")
        self.max_tokens = knobs.integer("REPRO_AB_MAX_TOKENS")
        self.repeats = knobs.integer("REPRO_AB_WARM_REPEATS", minimum=0)
        self.nonce = nonce
        self.timeout = knobs.Requests.from_env().timeout_s

    def prepare(self, arm: str) -> None:
        pass

    def _measured(self, arm: str, name: str, ids: list[int]) -> Any:
        session = self.sessions[arm]
        return self.client.measure(
            session.client,
            session.settings,
            name,
            f"p{self.tokens}",
            lambda: self.client.complete(session.client, session.settings, session.model, ids, self.timeout, max_tokens=self.max_tokens),
        )

    def _ttft(self, arm: str, ids: list[int]) -> float:
        session = self.sessions[arm]
        result = self.client.complete(session.client, session.settings, session.model, ids, self.timeout, max_tokens=1)
        return float(result["ttft"])

    def block(self, order: list[str], index: int, rng: random.Random) -> dict[str, Sample]:
        from reproduce_vllm_lmcache.report import judging
        from reproduce_vllm_lmcache.servers import lmcache_api

        first = self.sessions[order[0]]
        ids = first.prompt(self.tokens, seed=f"ab-{self.nonce}-{index}")
        out = {arm: Sample() for arm in order}
        for arm in order:
            s = self.sessions[arm].settings
            if s.connector:
                lmcache_api.clear_l1(self.sessions[arm].client, s.lmcache_http_url)
        cold = {arm: self._measured(arm, "cold", ids) for arm in order}
        warm = {arm: self._measured(arm, "warm", ids) for arm in order}
        for arm in order:
            s = self.sessions[arm].settings
            judged = s.connector and not s.prefix_caching
            c, w = cold[arm], warm[arm]
            out[arm].add("ttft_cold", c.ttft_s)
            out[arm].add("e2e_cold", c.total_s)
            out[arm].add("e2e_warm", w.total_s)
            out[arm].add("ttft_warm", w.ttft_s)
            (verdict,) = judging.verdicts([c.as_dict(), w.as_dict()])
            out[arm].checks = {
                "stored": verdict["stored_on_cold"] or not judged,
                "hit": verdict["hit_on_warm"] or not judged,
                "cold = warm": verdict["output_identical"],
            }
            out[arm].answer = c.output_tokens
            out[arm].detail = {
                "warm_prefill_s": w.vllm_prefill_s,
                "warm_queue_s": w.vllm_queue_s,
                "warm_hit_tokens": w.vllm_external_hit_tokens,
            }
        for _ in range(self.repeats):
            for arm in rng.sample(order, len(order)):
                out[arm].add("ttft_warm", self._ttft(arm, ids))
        warm_medians = {arm: statistics.median(out[arm].metrics["ttft_warm"]) for arm in order}
        print(
            f"  {'  '.join(f'{arm.upper()}: cold {cold[arm].ttft_s:.3f} s, warm {warm_medians[arm]:.3f} s' for arm in sorted(order))}"
            f" (TTFT; warm: median of {1 + self.repeats})",
            flush=True,
        )
        return out

    def close(self) -> None:
        for s in self.sessions.values():
            s.close()


class WorkloadPoint:
    """One point of the workload sweep (REPRO_AB_WORKLOAD_POINT): the caches are filled once per
    arm (``prepare``), then each block is one measured pass of the same requests per arm."""

    metrics = ("throughput", "ttft_p50", "ttft_p99")
    headline = "throughput"

    def __init__(self, settings: dict[str, Settings], out: Path) -> None:
        from reproduce_vllm_lmcache.experiments import ab_arms, workload

        self.settings = settings
        self.knobs = workload.Knobs.from_env()
        self.name, self.concurrency, self.ratio = ab_arms.workload_point()
        self.servers = {arm: workload._Servers(s) for arm, s in settings.items()}
        self.out = out

    def _pass(self, arm: str, name: str) -> dict[str, Any]:
        from reproduce_vllm_lmcache.experiments import workload

        out = self.out / f"arm-{arm}"
        out.mkdir(parents=True, exist_ok=True)
        argv = workload.bench_serve_argv(self.knobs, self.settings[arm], self.ratio, 0, self.concurrency, out, name)
        return workload._bench_serve(argv, out / "bench-serve.log")

    def prepare(self, arm: str) -> None:
        self.servers[arm].clear()
        started = time.monotonic()
        result = self._pass(arm, "fill")
        print(f"  arm {arm.upper()}: fill pass, {result.get('completed')} requests in {time.monotonic() - started:.1f} s", flush=True)

    def _sample(self, arm: str, index: int) -> Sample:
        before = self.servers[arm].counters()
        result = self._pass(arm, f"measured-{index}")
        after = self.servers[arm].counters()
        requests = self.knobs.documents(self.ratio) * self.knobs.repeats
        hits = {k: after.get(k, 0) - before.get(k, 0) for k in ("vllm:external_prefix_cache_hits_total", "vllm:prefix_cache_hits_total")}
        sample = Sample(
            checks={"all completed": result.get("completed") == requests and not result.get("failed"), "hit": sum(hits.values()) > 0},
            detail={"hit_tokens": hits},
        )
        sample.add("throughput", float(result["request_throughput"]))
        sample.add("ttft_p50", float(result["p50_ttft_ms"]) / 1000)
        sample.add("ttft_p99", float(result["p99_ttft_ms"]) / 1000)
        print(
            f"  arm {arm.upper()}: {result.get('completed')} requests, {result['request_throughput']:.2f} req/s, "
            f"TTFT p50 {sample.metrics['ttft_p50'][0]:.3f} s p99 {sample.metrics['ttft_p99'][0]:.3f} s",
            flush=True,
        )
        return sample

    def block(self, order: list[str], index: int, rng: random.Random) -> dict[str, Sample]:
        return {arm: self._sample(arm, index) for arm in order}

    def close(self) -> None:
        pass


# REPRO_AB_MEASURE -> what a block measures
MEASURES: dict[str, type[Pairs] | type[WorkloadPoint]] = {"pairs": Pairs, "workload": WorkloadPoint}
