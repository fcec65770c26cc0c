"""Self-contained HTML pages for recorded runs: ``report.html`` in a run folder (its tables,
verdicts, plots, trace, config and checkout state, everything inlined) and ``results/index.html``
listing the runs. Reads only what the run folder holds."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jinja2

# The file that says what a run was, in order of preference; the others are shown after it.
MAIN_FILES = (
    "ab.json",
    "run.json",
    "matrix.json",
    "bench.json",
    "trace.json",
    "engine_bench.json",
    "startup.json",
    "shared.json",
    "server_bench.json",
    "soak.json",
)
TEXT_SUFFIXES = (".md", ".txt")
MAX_TEXT_BYTES = 200_000
MAX_COLUMNS = 14
# Floats in this range are wall-clock times (2017..2049), shown as UTC times of day.
EPOCH_RANGE = (1.5e9, 2.5e9)
# Long per-token lists are left to the JSON files.
SKIPPED_KEYS = {"output_tokens", "top_logprobs", "output_text", "config", "warm_ttft_samples", "cold_ttft_samples", "blocks", "sessions"}

PAGE = jinja2.Template(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 72em; color: #1d1d1f; background: #fff; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f3f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #116611; font-weight: 600; } .fail { color: #b00020; font-weight: 600; }
img { max-width: 100%; border: 1px solid #eee; } pre { background: #f7f7f9; padding: .7em; overflow-x: auto; font-size: 12px; }
.muted { color: #666; }
</style></head><body>
<h1>{{ title }}</h1>
<p class="muted">{{ subtitle }}</p>
{% for section in sections %}
<h2 id="{{ section.id }}">{{ section.title }}</h2>
{% if section.note %}<p>{{ section.note }}</p>{% endif %}
{% for table in section.tables %}
{% if table.caption %}<p><b>{{ table.caption }}</b></p>{% endif %}
<table><tr>{% for c in table.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in table.rows %}<tr>{% for cell in row %}<td class="{{ cell.cls }}">{% if cell.href %}<a href="{{ cell.href }}">{{ cell.text }}</a>{% else %}{{ cell.text }}{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table>
{% endfor %}
{% for image in section.images %}<p><b>{{ image.name }}</b><br><img alt="{{ image.name }}" src="data:image/png;base64,{{ image.data }}"></p>{% endfor %}
{% for text in section.texts %}<p><b>{{ text.name }}</b></p><pre>{{ text.body }}</pre>{% endfor %}
{% for link in section.links %}<a href="{{ link.href }}">{{ link.name }}</a>{% if link.note %} <span class="muted">{{ link.note }}</span>{% endif %}<br>{% endfor %}
{% endfor %}
</body></html>
""",
    autoescape=True,
)


def cell(value: Any) -> dict[str, str]:
    if isinstance(value, bool):
        return {"text": "yes" if value else "no", "cls": "pass" if value else "fail"}
    if isinstance(value, float) and EPOCH_RANGE[0] < value < EPOCH_RANGE[1]:  # a wall-clock time
        return {"text": time.strftime("%H:%M:%S", time.gmtime(value)) + f".{int(value % 1 * 1000):03d}Z", "cls": "num"}
    if isinstance(value, float):
        return {"text": f"{value:.4g}", "cls": "num"}
    if isinstance(value, int):
        return {"text": str(value), "cls": "num"}
    if value is None:
        return {"text": "", "cls": ""}
    if isinstance(value, (dict, list)):
        return {"text": json.dumps(value)[:200], "cls": ""}
    return {"text": str(value), "cls": ""}


def table_of(items: list[dict[str, Any]], caption: str = "") -> dict[str, Any]:
    """A list of records as a table: their plain (non-nested) fields, in first-seen order."""
    columns: list[str] = []
    for item in items:
        for key, value in item.items():
            if key not in columns and key not in SKIPPED_KEYS and not isinstance(value, (dict, list)):
                columns.append(key)
    columns = columns[:MAX_COLUMNS]
    return {"caption": caption, "columns": columns, "rows": [[cell(item.get(c)) for c in columns] for item in items]}


def pairs_of(mapping: dict[str, Any], caption: str = "") -> dict[str, Any]:
    return {"caption": caption, "columns": ["name", "value"], "rows": [[cell(k), cell(v)] for k, v in mapping.items()]}


def data_tables(name: str, data: Any) -> list[dict[str, Any]]:
    """Every list of records and every plain field of one JSON file, as tables."""
    if isinstance(data, list):
        return [table_of(data, name)] if data and all(isinstance(x, dict) for x in data) else []
    if not isinstance(data, dict):
        return []
    tables = []
    plain = {k: v for k, v in data.items() if not isinstance(v, (dict, list)) and k not in SKIPPED_KEYS}
    if plain:
        tables.append(pairs_of(plain, f"{name}"))
    for key, value in data.items():
        if key in SKIPPED_KEYS:
            continue
        if isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
            tables.append(table_of(value, f"{name}: {key}"))
        elif isinstance(value, dict) and value and all(isinstance(x, dict) for x in value.values()):
            tables.append(table_of([{"name": k, **v} for k, v in value.items()], f"{name}: {key}"))
    return tables


def main_file(run_dir: Path) -> Path | None:
    for name in MAIN_FILES:
        if (run_dir / name).is_file():
            return run_dir / name
    found = sorted(run_dir.glob("*.json"))
    return found[0] if found else None


def load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def config_tables(config_data: dict[str, Any]) -> list[dict[str, Any]]:
    settings = {k: v for k, v in config_data.items() if k not in ("knobs", "checkouts")}
    tables = [pairs_of(settings, "settings and environment")]
    checkouts = config_data.get("checkouts") or {}
    if checkouts:
        rows = [
            {
                "checkout": name,
                "head": s.get("head", ""),
                "edited_files": ", ".join(s.get("edited_files", [])) or "none",
                "edits_sha256": (s.get("edits_sha256") or "")[:16],
            }
            for name, s in checkouts.items()
        ]
        tables.append(table_of(rows, "checkout state (what code produced this run)"))
    if config_data.get("knobs"):
        tables.append(pairs_of(config_data["knobs"], "every knob (defaults.env and environment)"))
    return tables


def run_report(run_dir: Path) -> str:
    """The HTML text of one run folder's report."""
    main = main_file(run_dir)
    files = sorted(run_dir.glob("*.json"), key=lambda p: (p != main, p.name))
    sections: list[dict[str, Any]] = []
    config_data: dict[str, Any] = {}
    for path in files:
        data = load(path)
        if isinstance(data, dict) and isinstance(data.get("config"), dict) and not config_data:
            config_data = data["config"]
        tables = data_tables(path.name, data)
        if tables:
            sections.append({"id": path.stem, "title": path.name, "tables": tables})
    images = [{"name": p.name, "data": base64.b64encode(p.read_bytes()).decode()} for p in sorted(run_dir.glob("*.png"))]
    if images:
        sections.insert(0, {"id": "plots", "title": "plots", "images": images})
    texts = [
        {"name": p.name, "body": p.read_text(errors="replace")}
        for p in sorted(run_dir.iterdir())
        if p.suffix in TEXT_SUFFIXES and p.is_file() and p.stat().st_size <= MAX_TEXT_BYTES
    ]
    if texts:
        sections.append({"id": "texts", "title": "text records", "texts": texts})
    if config_data:
        sections.append({"id": "config", "title": "configuration", "tables": config_tables(config_data)})
    others = [p for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != "report.html" and p.suffix not in (".png",)]
    if others:
        links = [
            {"href": p.relative_to(run_dir).as_posix(), "name": p.relative_to(run_dir).as_posix(), "note": f"{p.stat().st_size:,} bytes"}
            for p in others
        ]
        sections.append({"id": "files", "title": "files of this run", "links": links})
    subtitle = f"main record: {main.name}" if main else "no JSON record in this folder"
    return PAGE.render(title=f"run {run_dir.name}", subtitle=subtitle, sections=sections)


def write_run_report(run_dir: Path) -> Path:
    path = run_dir / "report.html"
    path.write_text(run_report(run_dir))
    return path


def summary_of(run_dir: Path) -> str:
    """One line on what a run found, from its main record."""
    main = main_file(run_dir)
    data = load(main) if main else None
    if not isinstance(data, dict):
        return ""
    if isinstance(data.get("effects"), list) and data["effects"]:  # an A/B
        return "; ".join(f"{e['metric']}: {e['text']}" for e in data["effects"][:2])
    verdicts = data.get("verdicts")
    if isinstance(verdicts, list) and verdicts:
        hits = sum(1 for v in verdicts if v.get("hit_on_warm") or v.get("source_ok"))
        same = sum(1 for v in verdicts if v.get("output_identical") or v.get("identical_to_baseline"))
        return f"{len(verdicts)} verdicts: {hits} warm hits proven, {same} token-identical"
    if "passed" in data:
        return f"{data.get('scenario', '')}: {'passed' if data['passed'] else 'FAILED'}"
    if isinstance(data.get("points"), list):
        return f"{len(data['points'])} bench points"
    if isinstance(data.get("summary"), list):
        return f"{len(data['summary'])} start configurations"
    return main.name if main else ""


def index(runs_dir: Path) -> str:
    rows = []
    for run_dir in sorted((p for p in runs_dir.iterdir() if p.is_dir()), reverse=True):
        stamp, _, kind = run_dir.name.partition("-")
        report = (
            {"text": "report.html", "cls": "", "href": f"runs/{run_dir.name}/report.html"}
            if (run_dir / "report.html").exists()
            else {"text": f"(no report yet: repro report {runs_dir.name}/{run_dir.name})", "cls": ""}
        )
        rows.append(
            [
                {"text": stamp, "cls": ""},
                {"text": kind, "cls": ""},
                {"text": summary_of(run_dir), "cls": ""},
                report,
            ]
        )
    table = {"caption": "", "columns": ["recorded (UTC)", "kind", "what it found", "report"], "rows": rows}
    sections = [{"id": "runs", "title": "runs", "tables": [table]}]
    return PAGE.render(title="recorded runs", subtitle=f"{len(rows)} run folders under {runs_dir.name}/", sections=sections)


def write_index(results_dir: Path) -> Path:
    path = results_dir / "index.html"
    path.write_text(index(results_dir / "runs"))
    return path
