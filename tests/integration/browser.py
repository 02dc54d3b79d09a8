"""Headless Chromium for the HTML pages (``churnwatch report``, the worker's ``/quality``):
each page marks every ``figure[data-plot]`` with ``data-drawn`` once rendered."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "chromium not found: apt-get install chromium (CI installs it)"
    return path


def browse(page: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", *flags, page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def drawn(dom: str) -> dict[str, str]:
    """``{plot: "yes" | "no"}`` from a page's dumped DOM."""
    return dict(re.findall(r'data-plot="([a-z-]+)" data-drawn="(yes|no)"', dom))


def console_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What the page logged to the console (errors included)."""
    return [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
