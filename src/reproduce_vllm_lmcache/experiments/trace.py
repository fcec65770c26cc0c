"""One request through both servers, drawn from what they record themselves.

Sources, and nothing else: the client's own clock (send, first token, last token); vLLM's
metrics around the request (queue, prefill and decode time, the connector's lookup time:
histogram sums, exact with one request at a time); vLLM's log at DEBUG with millisecond
timestamps (request added, the connector's lookup result, waiting for remote KV, load
finished); LMCache's log at DEBUG (the MP server's lookup/prefetch, STORE and RETRIEVE
handlers, the transfer's own "Stored/Retrieved N tokens in S seconds"); and LMCache's storage
trace file (``lmcache server --trace-level storage``: reserve/finish write, prefetch, reads).
An event no source recorded is not drawn."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LMCACHE_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\] LMCache (\w+):\s*(.*)$")
VLLM_LINE = re.compile(
    r"^\((?P<proc>[^)]*?) pid=\d+\) (?P<level>\w+) (?P<md>\d\d-\d\d) (?P<hms>\d\d:\d\d:\d\d)\.(?P<ms>\d{3}) \[[^\]]+\] (?P<msg>.*)$"
)


@dataclass
class Event:
    lane: str
    name: str
    start: float  # epoch seconds
    end: float | None  # None: an instant
    source: str
    detail: dict[str, Any] = field(default_factory=dict)
    request: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# (pattern, lane, what it is, kind): kind "start"/"end" pair up by name; "instant"; "took" = a
# span that ends at the line, its length in seconds in the second group.
LMCACHE_MESSAGES = (
    (r"MP lookup/prefetch start: session=(?P<session>\S+)", "LMCache server", "LOOKUP + prefetch", "start"),
    (r"MP lookup/prefetch end: session=(?P<session>\S+) found_count=(?P<chunks>\d+)", "LMCache server", "LOOKUP + prefetch", "end"),
    (r"MP retrieve start: session=(?P<session>\S+)", "LMCache server", "RETRIEVE", "start"),
    (r"MP retrieve end: session=(?P<session>\S+) .*retrieved_count=(?P<chunks>\d+)", "LMCache server", "RETRIEVE", "end"),
    (r"MP store start: session=(?P<session>\S+)", "LMCache server", "STORE", "start"),
    (r"MP store end: session=(?P<session>\S+) .*stored_count=(?P<chunks>\d+)", "LMCache server", "STORE", "end"),
    (r"Stored (?P<tokens>\d+) tokens in (?P<seconds>[\d.]+) seconds", "LMCache storage", "stored", "took"),
    (r"Retrieved (?P<tokens>\d+) tokens in (?P<seconds>[\d.]+) seconds", "LMCache storage", "retrieved", "took"),
    (r"L1 write finished: (?P<chunks>\d+) keys", "LMCache storage", "L1 write finished", "instant"),
    (
        r"vLLM block allocation: req_id=(?P<session>\S+) new_blocks=(?P<blocks>\d+) new_tokens=(?P<tokens>\d+)",
        "LMCache server",
        "block allocation report",
        "instant",
    ),
)
VLLM_MESSAGES = (
    (r"Added request (?P<session>\S+?)\.?$", "vLLM scheduler", "request added", "instant"),
    (r"vLLM hit is: (?P<apc_tokens>\d+), Need to load is (?P<tokens>\d+)", "connector (in vLLM)", "lookup result", "instant"),
    (r"(?P<session>\S+) is still in WAITING_FOR_REMOTE_KVS state", "vLLM scheduler", "waiting for remote KV", "instant"),
    (r"Finished recving KV transfer for request (?P<session>\S+)", "connector (in vLLM)", "load finished", "instant"),
    (r"Finished sending KV transfer for request (?P<session>\S+)", "connector (in vLLM)", "store finished", "instant"),
)
ENGINE_DRIVEN_NAMES = {"stored": "PREPARE_STORE .. COMMIT_STORE", "retrieved": "PREPARE_RETRIEVE .. COMMIT_RETRIEVE"}


def _numbers(match: re.Match[str]) -> dict[str, Any]:
    return {k: (int(v) if v.isdigit() else v) for k, v in match.groupdict().items() if v is not None and k != "seconds"}


def from_messages(
    lines: Iterable[tuple[float, str]], table: tuple[tuple[str, str, str, str], ...], source: str, transfer_mode: str
) -> list[Event]:
    compiled = [(re.compile(p), lane, name, kind) for p, lane, name, kind in table]
    events: list[Event] = []
    open_spans: dict[tuple[str, str], Event] = {}
    for stamp, message in lines:
        for pattern, lane, name, kind in compiled:
            match = pattern.search(message)
            if not match:
                continue
            detail = _numbers(match)
            key = (name, str(detail.get("session", "")))
            if kind == "start":
                open_spans[key] = Event(lane, name, stamp, None, source, detail)
            elif kind == "end" and key in open_spans:
                span = open_spans.pop(key)
                span.end, span.detail = stamp, {**span.detail, **detail}
                events.append(span)
            elif kind == "took":
                seconds = float(match.group("seconds"))
                label = ENGINE_DRIVEN_NAMES[name] if transfer_mode == "engine_driven" else f"{name} (handler)"
                events.append(Event(lane, label, stamp - seconds, stamp, source, {**detail, "seconds": seconds}))
            elif kind == "instant":
                events.append(Event(lane, name, stamp, None, source, detail))
            break
    return events


def collapse(events: list[Event]) -> list[Event]:
    """A line a server logs again and again (vLLM: "still waiting for remote KV" at every
    scheduler step) becomes one span from its first to its last time, with the count."""
    out: list[Event] = []
    for event in sorted(events, key=lambda e: e.start):
        last = next((e for e in reversed(out) if e.lane == event.lane), None)
        repeated = (
            last is not None and last.name == event.name and event.end is None and last.detail.get("session") == event.detail.get("session")
        )
        if repeated and (last.end is None or "times" in last.detail):
            last.end = event.start
            last.detail["times"] = int(last.detail.get("times", 1)) + 1
        else:
            out.append(event)
    return out


def lmcache_lines(path: Path) -> list[tuple[float, str]]:
    """(epoch seconds, message) of every LMCache-format line (local time, milliseconds)."""
    out = []
    for raw in path.read_text(errors="replace").splitlines():
        match = LMCACHE_LINE.match(ANSI.sub("", raw).strip())
        if match:
            stamp = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")) + int(match.group(2)) / 1000
            out.append((stamp, match.group(4)))
    return out


def vllm_lines(path: Path, year: int) -> list[tuple[float, str]]:
    """(epoch seconds, message) of vLLM lines that carry milliseconds (the trace's logging config)."""
    out = []
    for raw in path.read_text(errors="replace").splitlines():
        match = VLLM_LINE.match(ANSI.sub("", raw).strip())
        if match:
            parsed = time.strptime(f"{year}-{match['md']} {match['hms']}", "%Y-%m-%d %H:%M:%S")
            out.append((time.mktime(parsed) + int(match["ms"]) / 1000, match["msg"]))
    return out


def storage_trace(path: Path) -> list[Event]:
    """LMCache's own storage trace (``--trace-level storage``), read with its own reader."""
    from lmcache.v1.mp_observability.trace.codecs import decode_args
    from lmcache.v1.mp_observability.trace.reader import TraceReader

    events: list[Event] = []
    reads: list[Event] = []  # read_prefetched_results entered and not yet left
    with TraceReader(str(path)) as reader:
        for record in reader.records():
            name = record.qualname.rsplit(".", 2)
            short = ".".join(name[-2:]) if name[-1].startswith("__") else name[-1]
            try:
                args = decode_args(record.args)
            except Exception:  # an argument type this reader does not know: keep the call, not its args
                args = {}
            chunks = next((len(v) for v in args.values() if isinstance(v, (list, tuple))), None)
            detail = {"call": record.qualname, **({"chunks": chunks} if chunks is not None else {})}
            if short == "read_prefetched_results.__enter__":
                reads.append(Event("LMCache storage", "read prefetched chunks", record.t_wall, None, "lmcache trace", detail))
            elif short == "read_prefetched_results.__exit__" and reads:
                span = reads.pop()
                span.end = record.t_wall
                events.append(span)
            else:
                events.append(Event("LMCache storage", short, record.t_wall, None, "lmcache trace", detail))
    return events


def client_and_metrics(round_: dict[str, Any], anchor: float | None) -> list[Event]:
    """The client's clock and vLLM's per-request durations (histogram deltas). vLLM's spans are
    laid end to end from the moment it logged the request as added (when the log has it);
    without that line they are not drawn."""
    sent = float(round_["sent_at"])
    events = [
        Event("client", "waiting for the first token", sent, sent + round_["ttft_s"], "client", {"prompt_tokens": round_["prompt_tokens"]}),
        Event(
            "client",
            "streaming the answer",
            sent + round_["ttft_s"],
            sent + round_["total_s"],
            "client",
            {"tokens": round_["completion_tokens"]},
        ),
    ]
    if anchor is None:
        return events
    queue, prefill, decode = round_["vllm_queue_s"], round_["vllm_prefill_s"], round_.get("vllm_decode_s", 0.0)
    spans = (("queued (lookup, waiting for the load)", queue), ("prefill of the tail + first token", prefill), ("decode", decode))
    start = anchor
    for name, seconds in spans:
        if seconds > 0:
            events.append(Event("vLLM engine", name, start, start + seconds, "vllm metrics", {"seconds": round(seconds, 4)}))
        start += seconds
    if round_.get("vllm_lookup_s"):
        lookup = round_["vllm_lookup_s"]
        events.append(
            Event(
                "connector (in vLLM)",
                "LMCache lookup (connector's clock)",
                anchor,
                anchor + lookup,
                "vllm metrics",
                {"seconds": round(lookup, 4)},
            )
        )
    return events


def assign(events: list[Event], windows: list[tuple[str, float, float]]) -> list[Event]:
    """Each event to the request whose window holds its start; events outside every window go."""
    kept = []
    for event in events:
        for name, start, end in windows:
            if start - 0.05 <= event.start < end:
                event.request = name
                kept.append(event)
                break
    return kept


def add_bytes(events: list[Event], kv_bytes_per_token: int, chunk_size: int) -> None:
    for event in events:
        if "tokens" in event.detail and event.lane.startswith("LMCache"):
            event.detail["bytes"] = int(event.detail["tokens"]) * kv_bytes_per_token
        elif "chunks" in event.detail:
            event.detail["bytes"] = int(event.detail["chunks"]) * chunk_size * kv_bytes_per_token


def windows_of(rounds: list[dict[str, Any]], tail: float = 3.0) -> list[tuple[str, float, float]]:
    """Each request's window: from its send to the next request's send (stores finish after the
    response), the last one until ``tail`` seconds after its last token."""
    out = []
    for i, r in enumerate(rounds):
        end = rounds[i + 1]["sent_at"] if i + 1 < len(rounds) else r["sent_at"] + r["total_s"] + tail
        out.append((r["name"], r["sent_at"], end))
    return out


def collect(
    rounds: list[dict[str, Any]],
    vllm_log: Path,
    lmcache_log: Path,
    storage: Path | None,
    transfer_mode: str,
    kv_bytes_per_token: int,
    chunk_size: int,
) -> list[Event]:
    """Every recorded event of these requests, from every source that exists."""
    year = time.localtime(rounds[0]["sent_at"]).tm_year
    server: list[Event] = []
    if vllm_log.is_file():
        lines = sorted(vllm_lines(vllm_log, year) + lmcache_lines(vllm_log))
        server += collapse(from_messages(lines, VLLM_MESSAGES, "vllm log", transfer_mode))
    if lmcache_log.is_file():
        server += from_messages(lmcache_lines(lmcache_log), LMCACHE_MESSAGES, "lmcache log", transfer_mode)
    if storage is not None and storage.is_file():
        server += storage_trace(storage)
    events = assign(server, windows_of(rounds))
    for r in rounds:
        added = min((e.start for e in events if e.request == r["name"] and e.name == "request added"), default=None)
        for e in client_and_metrics(r, added):
            e.request = r["name"]
            events.append(e)
    add_bytes(events, kv_bytes_per_token, chunk_size)
    return sorted(events, key=lambda e: (e.request, e.start))


def run(session: Any, tokens: int, seed: str, timeout: float) -> list[dict[str, Any]]:
    """One prompt sent cold, then again warm, as the client always sends it."""
    ids = session.prompt(tokens, seed)
    return [session.round(name, f"p{tokens}", ids, timeout).as_dict() for name in ("cold", "warm")]
