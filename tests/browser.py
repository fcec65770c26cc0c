"""Headless Chromium for the tests: render a page to a PNG and collect its console errors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find() -> str | None:
    return next((path for name in NAMES if (path := shutil.which(name))), None)


def render(page: Path, shot: Path, profile: Path) -> list[str]:
    """Screenshot of ``page`` into ``shot``; the console errors (and uncaught exceptions) it logged."""
    browser = find()
    assert browser, "no Chromium"
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,1600",
            "--virtual-time-budget=2000",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert shot.is_file(), result.stderr[-3000:]
    return [
        line
        for line in result.stderr.splitlines()
        if "CONSOLE" in line and ("Uncaught" in line or ":ERROR:" in line or "error" in line.lower())
    ]


def blank(shot: Path) -> bool:
    """True when (almost) every pixel has the same colour."""
    from PIL import Image

    image = Image.open(shot).convert("L")
    histogram = image.histogram()
    return max(histogram) > 0.995 * sum(histogram)
