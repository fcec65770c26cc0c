"""Prompts of an exact token length, built with the served model's own tokenizer."""

from __future__ import annotations

import random
from collections.abc import Callable

Tokenize = Callable[[str], list[int]]

WORDS = [
    "cache",
    "memory",
    "token",
    "layer",
    "engine",
    "request",
    "server",
    "model",
    "prefix",
    "chunk",
    "store",
    "retrieve",
    "latency",
    "throughput",
    "attention",
    "kernel",
    "tensor",
    "batch",
    "schedule",
    "worker",
    "process",
    "thread",
    "socket",
    "metric",
    "counter",
    "window",
    "context",
    "document",
    "report",
    "market",
    "river",
    "mountain",
    "city",
    "garden",
    "library",
    "history",
    "science",
    "music",
    "theory",
    "signal",
    "network",
    "protocol",
    "storage",
    "disk",
    "value",
    "record",
    "table",
    "column",
    "index",
    "query",
    "answer",
    "question",
    "reason",
    "method",
    "result",
    "figure",
    "morning",
    "evening",
    "winter",
    "summer",
    "ocean",
    "forest",
    "island",
    "bridge",
    "harbor",
    "castle",
    "village",
    "careful",
    "quiet",
    "rapid",
    "gentle",
    "bright",
    "simple",
    "formal",
    "modern",
    "ancient",
    "distant",
    "local",
    "builds",
    "reads",
    "writes",
    "measures",
    "compares",
    "explains",
    "follows",
    "changes",
    "returns",
    "keeps",
]


def body_text(seed: str, words: int) -> str:
    """Deterministic pseudo-English: the same seed always gives the same text."""
    rng = random.Random(seed)
    sentences, count = [], 0
    while count < words:
        length = rng.randint(6, 14)
        sentence = " ".join(rng.choice(WORDS) for _ in range(length))
        sentences.append(sentence.capitalize() + ".")
        count += length
    return " ".join(sentences)


def build(tokenize: Tokenize, tokens: int, seed: str) -> list[int]:
    """Token ids of exactly ``tokens`` tokens: a header, a document body, a question."""
    head = tokenize(f"Document {seed}.\n\n")
    tail = tokenize("\n\nQuestion: what is this document about? Answer in one sentence.\nAnswer:")
    room = tokens - len(head) - len(tail)
    if room < 1:
        raise ValueError(f"{tokens} tokens is too short for a prompt (needs > {len(head) + len(tail)})")
    words = room
    while True:
        body = tokenize(" " + body_text(seed, words))
        if len(body) >= room:
            return head + body[:room] + tail
        words = words * 2
