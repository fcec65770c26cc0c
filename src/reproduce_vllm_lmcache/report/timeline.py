"""Drawing and summarising a trace (``repro trace``): per request, one lane per place (client,
vLLM's scheduler (its log) and engine phases (its metrics), the connector, LMCache's server and
storage), events as recorded in trace-*.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LANES = ("client", "vLLM scheduler", "vLLM engine", "connector (in vLLM)", "LMCache server", "LMCache storage")
SOURCE_COLOURS = {
    "client": "#4c72b0",
    "vllm metrics": "#55a868",
    "vllm log": "#8172b2",
    "lmcache log": "#c44e52",
    "lmcache trace": "#dd8452",
}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def summary(events: list[dict[str, Any]], origins: dict[str, float]) -> str:
    """Every event per request, in time order, relative to the client's send."""
    lines = []
    for request, origin in origins.items():
        lines.append(f"{request} (times from the client's send):")
        for e in sorted((e for e in events if e["request"] == request), key=lambda e: e["start"]):
            span = _ms(e["start"] - origin) + (f" +{(e['end'] - e['start']) * 1000:7.1f} ms" if e["end"] is not None else " " * 12)
            extra = ", ".join(f"{k}={v}" for k, v in e["detail"].items() if k not in ("call", "session"))
            lines.append(f"  {span}  {e['lane']:20s} {e['name']}" + (f" ({extra})" if extra else "") + f"  [{e['source']}]")
    return "\n".join(lines)


def draw(events: list[dict[str, Any]], origins: dict[str, float], title: str, path: Path) -> None:
    """One panel per request; spans as bars, instants as triangles, coloured by source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    requests = list(origins)
    fig, axes = plt.subplots(len(requests), 1, figsize=(14, 3.6 * len(requests)), squeeze=False)
    for ax, request in zip(axes[:, 0], requests, strict=True):
        origin = origins[request]
        mine = sorted((e for e in events if e["request"] == request), key=lambda e: e["start"])
        # The data path ends at the first token: the panel shows up to a little after it.
        first = next((e["end"] for e in mine if e["name"] == "waiting for the first token"), None)
        last = max(((e["end"] or e["start"]) for e in mine), default=origin + 1.0)
        right = ((first if first is not None else last) - origin) * 1000 * 1.2
        later = [e for e in mine if (e["start"] - origin) * 1000 > right]
        if later:
            ax.text(
                0.995,
                0.02,
                f"{len(later)} later events (decode, stores finishing): see the summary",
                transform=ax.transAxes,
                ha="right",
                fontsize=7,
                color="#555555",
            )
        labelled: dict[int, float] = {}
        for e in mine:
            y = len(LANES) - 1 - LANES.index(e["lane"])
            x0 = (e["start"] - origin) * 1000
            colour = SOURCE_COLOURS.get(e["source"], "#777777")
            # Labels of one lane take turns above and below so that neighbours stay readable.
            flip = labelled.get(y, 0.0)
            labelled[y] = 1.0 - flip
            if e["end"] is None:
                ax.plot([x0], [y], marker="v", color=colour, markersize=7)
                ax.annotate(e["name"], (x0, y), xytext=(2, 8 if flip else -14), textcoords="offset points", fontsize=6.5)
            else:
                width = max((e["end"] - e["start"]) * 1000, right / 500)
                ax.barh(y, width, left=x0, height=0.42, color=colour, alpha=0.85, edgecolor="white", linewidth=1.2)
                ax.annotate(e["name"], (x0, y), xytext=(2, 9 if flip else -15), textcoords="offset points", fontsize=6.5)
        ax.set_yticks(range(len(LANES)), list(reversed(LANES)), fontsize=8)
        ax.set_ylim(-0.9, len(LANES) - 0.1)
        ax.set_xlim(-right * 0.02, right)
        ax.set_xlabel("ms since the client sent the request (up to a little after the first token)")
        ax.set_title(f"{title}: {request}", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], color=c, marker="s", linestyle="", label=s) for s, c in SOURCE_COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(SOURCE_COLOURS), fontsize=8, title="recorded by")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
