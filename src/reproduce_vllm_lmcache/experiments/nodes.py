"""Two nodes, one store (scripts/nodes.sh): each node an LMCache server and a vLLM, sharing KV
through one Redis via LMCache's own L2 adapter, registered with LMCache's coordinator. A
prompt prefilled on one node must be a hit on the other from the store (its L1 empty before),
token-identical; then the other way; then node A's LMCache, restarted empty, hits from the
store. Each node may live in its own network namespace: every request to it is made from
inside that namespace (servers.netns).

Over 300 lines: the node model (its two servers, namespace and session) and the two phases that
use it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.experiments import l2
from reproduce_vllm_lmcache.experiments.client import Round, Session
from reproduce_vllm_lmcache.experiments.scenarios import full_chunks
from reproduce_vllm_lmcache.servers import lmcache_api, metrics, netns
from reproduce_vllm_lmcache.servers.settings import Settings, venv_bin

# The coordinator endpoints behind `lmcache query coordinator --api NAME`.
COORDINATOR_VIEWS = {"instances": "/instances", "directory": "/directory/stats", "usage": "/instances/usage"}


@dataclass(frozen=True)
class NodeSpec:
    """One node as scripts/nodes.sh made it: NAME,NETNS,LMCACHE_PORT,LMCACHE_HTTP_PORT,VLLM_PORT
    (NETNS "-" when the node shares this machine's loopback)."""

    name: str
    netns: str
    lmcache_port: int
    lmcache_http_port: int
    vllm_port: int

    @classmethod
    def parse(cls, text: str) -> NodeSpec:
        try:
            name, ns, rpc, http, vllm = text.split(",")
            return cls(name, "" if ns == "-" else ns, int(rpc), int(http), int(vllm))
        except ValueError:
            raise ValueError(f"--node {text!r}: expected NAME,NETNS|-,LMCACHE_PORT,LMCACHE_HTTP_PORT,VLLM_PORT") from None

    def env(self) -> dict[str, str]:
        """The node's knobs as its servers got them (the store's address: REPRO_STORE_HOST)."""
        return {
            **os.environ,
            "REPRO_LMCACHE_PORT": str(self.lmcache_port),
            "REPRO_LMCACHE_HTTP_PORT": str(self.lmcache_http_port),
            "REPRO_VLLM_PORT": str(self.vllm_port),
            "REPRO_L2": "redis",
            "REPRO_NETNS": self.netns,
        }


class Node:
    """A connection to one node's servers, made (and always used) inside its namespace."""

    def __init__(self, spec: NodeSpec) -> None:
        self.spec = spec
        self.name = spec.name
        with self.inside():
            self.session = Session(Settings.from_env(spec.env()))

    def inside(self) -> AbstractContextManager[None]:
        return netns.entered(self.spec.netns)

    def prompt(self, tokens: int, seed: str) -> list[int]:
        with self.inside():  # the tokenizer is the node's vLLM (/tokenize)
            return self.session.prompt(tokens, seed)

    def round(self, name: str, label: str, ids: list[int], timeout: float) -> Round:
        with self.inside():
            return self.session.round(f"{name}@{self.name}", label, ids, timeout)

    def l1_objects(self) -> int:
        with self.inside():
            state = lmcache_api.status(self.session.client, self.session.settings.lmcache_http_url)
        return int(lmcache_api.l1(state).get("total_object_count", -1))

    def wait_stored(self, before: float, chunks: int) -> float:
        with self.inside():
            return l2.wait_l2_stored(self.session, before, chunks)

    def wait_connector(self, timeout: float = 120) -> float:
        """Seconds until this node's vLLM uses its (restarted) LMCache server again: its
        connector's heartbeat has to find the server back (the worker re-registers its KV cache,
        the scheduler's side starts asking again). Until the server lists the registration (its
        /status), then probed with requests that are looked up and store nothing
        (``Session.probe_lookup``) until the server counts the lookup they cause: lookups alone
        come back first, and find nothing while the worker is not registered."""
        started = time.monotonic()
        url = self.session.settings.lmcache_http_url
        while True:
            with self.inside():
                registered = lmcache_api.registered_kv_caches(lmcache_api.status(self.session.client, url)) > 0
                before = metrics.scrape(self.session.client, url).get(metrics.LMCACHE_LOOKUPS, 0.0)
                self.session.probe_lookup()
                after = metrics.scrape(self.session.client, url).get(metrics.LMCACHE_LOOKUPS, 0.0)
            if registered and after > before:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"node {self.name}: vLLM did not use its restarted LMCache server within {timeout:.0f} s")
            time.sleep(1)

    def l2_stored(self) -> float:
        with self.inside():
            return metrics.scrape(self.session.client, self.session.settings.lmcache_http_url).get(metrics.LMCACHE_L2_STORED, 0.0)

    def store(self) -> dict[str, Any]:
        with self.inside():
            return l2.store_contents(self.session)

    def coordinator(self, url: str) -> dict[str, Any]:
        """What the coordinator knows: the endpoints `lmcache query coordinator --api
        instances|directory|usage` reads, asked from this node's namespace."""
        views: dict[str, Any] = {}
        with self.inside():
            for api, path in COORDINATOR_VIEWS.items():
                try:
                    answer = self.session.client.get(url + path, timeout=30)
                    views[api] = answer.json() if answer.ok else {"error": f"{answer.status_code} {answer.text[:200]}"}
                except (requests.RequestException, ValueError) as exc:
                    views[api] = {"error": str(exc)[:200]}
        return views

    def query_coordinator(self, url: str, api: str) -> str:
        """`lmcache query coordinator --api API` as an operator runs it (its table), from this
        node's namespace (a forked process keeps the namespace of the thread that forked it)."""
        with self.inside():
            done = subprocess.run(
                [str(venv_bin("lmcache")), "query", "coordinator", "--api", api, "--url", url],
                capture_output=True,
                text=True,
                timeout=120,
                env={**os.environ, "LMCACHE_DISABLE_BANNER": "1"},
            )
        return "\n".join(line for line in done.stdout.splitlines() if " LMCache " not in line)

    def close(self) -> None:
        self.session.close()


def listed_l1(views: dict[str, Any], node: str) -> int | None:
    """How many L1 keys the coordinator's directory places on ``node``."""
    directory = views.get("directory")
    return directory.get("l1_keys_by_instance", {}).get(f"node-{node}") if isinstance(directory, dict) else None


def step(name: str, node: Node, r: Round, l1_before: int, baseline: Round | None, want: int, source: str = "") -> dict[str, Any]:
    """One request's record. source: where its hits must come from ("l2": every full chunk
    loaded from the store; "l2, empty L1": and the node's L1 held nothing before; "l1")."""
    entry: dict[str, Any] = {
        "step": name,
        "node": node.name,
        "source": source,
        "ttft_s": round(r.ttft_s, 3),
        "hit_tokens": r.vllm_external_hit_tokens,
        "want_hit_tokens": want,
        "want_chunks": -(-want // node.session.settings.chunk_size),
        "l1_objects_before": l1_before,
        "l1_read_chunks": r.lmcache_l1_read_chunks,
        "l2_loaded_chunks": r.lmcache_l2_loaded_chunks,
        "l1_write_chunks": r.lmcache_l1_write_chunks,
    }
    if baseline is not None:
        entry["identical_to_cold"] = r.output_tokens == baseline.output_tokens
    print(
        f"  {name}: {r.vllm_external_hit_tokens}/{want} tokens hit on {node.name} (L1 objects before: {l1_before}), "
        f"{r.lmcache_l2_loaded_chunks} chunks loaded from L2, TTFT {r.ttft_s:.3f} s"
        + ("" if baseline is None else f", {'same answer' if entry['identical_to_cold'] else 'DIFFERENT answer'}"),
        flush=True,
    )
    return entry


def share(a: Node, b: Node, tokens: int, seed: str, timeout: float, coordinator_url: str) -> dict[str, Any]:
    """A prompt prefilled on A is a hit on B from the store, then the other way round."""
    want = full_chunks(tokens, a.session.settings.chunk_size)
    steps: list[dict[str, Any]] = []
    rounds: list[Round] = []
    known: dict[str, Any] = {}
    for src, dst, tag in ((a, b, "AtoB"), (b, a, "BtoA")):
        ids = src.prompt(tokens, f"{seed}-{tag}")
        label = f"p{tokens}-{tag}"
        stored_before = src.l2_stored()
        cold = src.round("cold", label, ids, timeout)
        stored_s = src.wait_stored(stored_before, cold.lmcache_l1_write_chunks)
        steps.append({**step(f"{tag}: cold on {src.name}", src, cold, -1, None, 0), "l2_write_s": round(stored_s, 3), "store": src.store()})
        known[f"after {src.name} stored {tag}"] = dst.coordinator(coordinator_url)
        before = dst.l1_objects()
        from_store = dst.round("from-store", label, ids, timeout)
        # The first node to read from the store has never seen a prompt: its L1 is empty.
        source = "l2, empty L1" if tag == "AtoB" else "l2"
        steps.append(step(f"{tag}: on {dst.name}, from the store", dst, from_store, before, cold, want, source))
        again = dst.round("from-own-l1", label, ids, timeout)
        steps.append(step(f"{tag}: on {dst.name} again (its L1)", dst, again, dst.l1_objects(), cold, want, "l1"))
        rounds += [cold, from_store, again]
        known[f"after {dst.name} read {tag}"] = dst.coordinator(coordinator_url)
    return {
        "steps": steps,
        "coordinator": known,
        "rounds": [r.as_dict() for r in rounds],
        "prompts": {"AtoB": f"{seed}-AtoB", "BtoA": f"{seed}-BtoA"},
        "tokens": tokens,
    }


def after_restart(a: Node, earlier: dict[str, Any], timeout: float, coordinator_url: str) -> dict[str, Any]:
    """Node A's LMCache restarted empty: both prompts hit from the store again."""
    tokens = int(earlier["tokens"])
    want = full_chunks(tokens, a.session.settings.chunk_size)
    colds = {r["prompt"]: r for r in earlier["rounds"] if r["name"].startswith("cold@")}
    steps, rounds = [], []
    at_restart: dict[str, Any] = {"held": a.l1_objects(), "listed_by_coordinator": listed_l1(a.coordinator(coordinator_url), a.name)}
    print(
        f"  right after the restart {a.name}'s L1 holds {at_restart['held']} objects; the coordinator lists "
        f"{at_restart['listed_by_coordinator']} for it",
        flush=True,
    )
    back = a.wait_connector()
    at_restart["connector_back_s"] = round(back, 1)
    print(
        f"  {a.name}'s vLLM uses its restarted LMCache server again after {back:.1f} s (KV caches re-registered, lookups counted)",
        flush=True,
    )
    for i, (tag, seed) in enumerate(earlier["prompts"].items()):
        label = f"p{tokens}-{tag}"
        cold = colds[label]
        before = a.l1_objects()
        r = a.round("after-restart", label, a.prompt(tokens, seed), timeout)
        entry = step(f"{tag}: on {a.name} after its LMCache restarted empty", a, r, before, None, want, "l2" if i else "l2, empty L1")
        entry["identical_to_cold"] = r.output_tokens == cold["output_tokens"]
        steps.append(entry)
        rounds.append(r)
    # What the coordinator's directory says is in A's L1, beside what A's L1 holds.
    known = a.coordinator(coordinator_url)
    listed = listed_l1(known, a.name)
    l1_now = a.l1_objects()
    print(f"  {a.name}'s L1 holds {l1_now} objects; the coordinator's directory lists {listed} for it", flush=True)
    tables = {api: a.query_coordinator(coordinator_url, api) for api in ("instances", "usage")}
    for api, table in tables.items():
        print(f"  lmcache query coordinator --api {api}:\n{table}", flush=True)
    return {
        "steps": steps,
        "coordinator": {f"after {a.name}'s LMCache restarted": known},
        "l1_after_restart": {"right after": at_restart, "after both requests": {"held": l1_now, "listed_by_coordinator": listed}},
        "coordinator_tables": tables,
        "rounds": [r.as_dict() for r in rounds],
        "store": a.store(),
    }


def checks(share_part: dict[str, Any], restart_part: dict[str, Any]) -> dict[str, bool]:
    """The verdict's checks over both phases' steps."""
    out: dict[str, bool] = {}
    for s in share_part["steps"] + restart_part["steps"]:
        if not s["source"]:
            continue
        hit = s["hit_tokens"] == s["want_hit_tokens"] > 0 and s["identical_to_cold"]
        if s["source"].startswith("l2"):
            empty = s["source"] == "l2, empty L1"
            out[f"{s['step']}: {'L1 empty before, ' if empty else ''}every full chunk hit and loaded from the store, same answer"] = (
                hit and s["l2_loaded_chunks"] == s["want_chunks"] and (s["l1_objects_before"] == 0 or not empty)
            )
        else:
            out[f"{s['step']}: every full chunk hit, nothing loaded from the store, same answer"] = hit and s["l2_loaded_chunks"] == 0
    return out


def summary(share_part: dict[str, Any], restart_part: dict[str, Any], topology: dict[str, Any]) -> dict[str, Any]:
    results = checks(share_part, restart_part)
    for name, ok in results.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}", flush=True)
    steps = share_part["steps"] + restart_part["steps"]
    l2_ttft = [s["ttft_s"] for s in steps if s["l2_loaded_chunks"] > 0]
    l1_ttft = [s["ttft_s"] for s in steps if "again" in s["step"]]
    cold_ttft = [s["ttft_s"] for s in steps if "cold" in s["step"]]
    detail = (
        f"{topology['mode']}: cold {min(cold_ttft):.3f}-{max(cold_ttft):.3f} s, from the store (L2) "
        f"{min(l2_ttft):.3f}-{max(l2_ttft):.3f} s, from the node's own L1 {min(l1_ttft):.3f}-{max(l1_ttft):.3f} s"
    )
    passed = bool(results) and all(results.values())
    print(f"{'PASS' if passed else 'FAIL'} two nodes, one store: {detail}", flush=True)
    return {
        "scenario": "two nodes, one store",
        "passed": passed,
        "detail": detail,
        "checks": results,
        "topology": topology,
        "steps": steps,
        "coordinator": {**share_part["coordinator"], **restart_part["coordinator"]},
        "coordinator_tables": restart_part["coordinator_tables"],
        "l1_after_restart": restart_part["l1_after_restart"],
        "store_after": restart_part["store"],
        "rounds": share_part["rounds"] + restart_part["rounds"],
    }


def seed() -> str:
    return f"nodes-{time.time_ns()}"


def prompt_tokens() -> int:
    return knobs.Prompts.of("nodes").tokens


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def main(args: argparse.Namespace) -> int:
    """One phase of scripts/nodes.sh against nodes it started (each maybe in its own namespace)."""
    from reproduce_vllm_lmcache.experiments.record import record
    from reproduce_vllm_lmcache.report import results

    timeout = knobs.Requests.from_env().timeout_s
    specs = [NodeSpec.parse(text) for text in args.node]
    opened = [Node(spec) for spec in specs]
    try:
        if args.phase == "share":
            a, b = opened
            part = share(a, b, prompt_tokens(), seed(), timeout, args.coordinator)
            results.write(args.run_dir, "nodes-share.json", part, latest=False)
            return 0
        first = load(args.run_dir / "nodes-share.json")
        part = after_restart(opened[0], first, timeout, args.coordinator)
        found = summary(first, part, {"mode": args.topology, "nodes": [vars(s) for s in specs]})
        return record(args.run_dir, "nodes.json", found, opened[0].session.settings.as_dict())
    finally:
        for node in opened:
            node.close()
