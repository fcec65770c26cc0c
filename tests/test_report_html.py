"""report.html and results/index.html: what a run folder holds, in one self-contained page."""

from __future__ import annotations

import json
import re
from pathlib import Path

from reproduce_vllm_lmcache.report import html


def make_run(folder: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = folder / "runs" / "20260101T000000Z-run"
    (run / "logs").mkdir(parents=True)
    rounds = [
        {
            "name": "cold",
            "prompt": "p640",
            "prompt_tokens": 640,
            "ttft_s": 1.5,
            "note": "<script>alert(1)</script>",
            "vllm_external_hit_tokens": 0,
            "output_tokens": ["a"] * 40,
        },
        {"name": "warm", "prompt": "p640", "prompt_tokens": 640, "ttft_s": 0.1, "output_text": "x", "vllm_external_hit_tokens": 639},
    ]
    verdicts = [{"prompt": "p640", "stored_on_cold": True, "hit_on_warm": True, "output_identical": False, "speedup": 15.0}]
    config = {
        "dtype": "float32",
        "knobs": {"REPRO_CHUNK_SIZE": "64"},
        "checkouts": {"LMCache": {"head": "abc123", "edited_files": ["lmcache/x.py"], "edits_sha256": "f" * 64}},
    }
    (run / "run.json").write_text(json.dumps({"config": config, "rounds": rounds, "verdicts": verdicts}))
    (run / "logs" / "vllm.log").write_text("log line\n")
    (run / "notes.md").write_text("# a note <b>\n")
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    fig.savefig(run / "plot.png")
    plt.close(fig)
    return run


def test_run_report_holds_tables_verdicts_plots_config_and_checkouts(tmp_path) -> None:
    run = make_run(tmp_path)
    page = html.write_run_report(run).read_text()
    assert '<td class="num">639</td>' in page  # the rounds table
    assert '<td class="pass">yes</td>' in page and '<td class="fail">no</td>' in page  # verdicts
    assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', page)  # the plot, inlined
    assert "abc123" in page and "lmcache/x.py" in page and "REPRO_CHUNK_SIZE" in page
    assert 'href="logs/vllm.log"' in page and "# a note &lt;b&gt;" in page
    # Recorded text is escaped, never run; per-token lists stay in the JSON.
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert "output_tokens" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page  # self-contained, no code


def test_index_lists_every_run_and_links_its_report(tmp_path) -> None:
    run = make_run(tmp_path)
    (tmp_path / "runs" / "20260102T000000Z-bench").mkdir()
    html.write_run_report(run)
    page = html.write_index(tmp_path).read_text()
    assert 'href="runs/20260101T000000Z-run/report.html"' in page
    assert "20260102T000000Z" in page and "(no report yet" in page
    assert "1 verdicts: 1 warm hits proven, 0 token-identical" in page
