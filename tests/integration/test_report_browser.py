"""``churnwatch report`` renders in a real headless Chromium: every plot drawn, no
console error. Needs Debian's ``chromium`` (CI installs it); no broker."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from models.simulator import SimConfig, simulate
from streams.cli import main
from tests.integration.browser import browse, console_lines, drawn

pytestmark = pytest.mark.browser

PLOTS = {"roc", "pr", "reliability", "threshold-churn", "threshold-sharing",
         "alerts-per-day", "lead-times", "sharing-actions"}  # fmt: skip


def test_report_renders_every_plot_in_chromium(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    with events.open("wb") as f:
        for ev in simulate(SimConfig(accounts=150, days=75, seed=3)):
            f.write(orjson.dumps(ev) + b"\n")
    page = tmp_path / "report.html"
    assert main(["report", str(events), "--out", str(page), "--quiet"]) == 0
    text = page.read_text()
    assert text.count("<svg") == len(PLOTS) and "<img" not in text  # self-contained

    shown = browse(page, "--dump-dom")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert 'data-checked="yes"' in shown.stdout, "the page's own check did not run"
    assert drawn(shown.stdout) == dict.fromkeys(PLOTS, "yes")
    assert console_lines(shown) == []

    shot = tmp_path / "report.png"
    out = browse(page, "--hide-scrollbars", "--window-size=1400,3000", f"--screenshot={shot}")
    assert out.returncode == 0 and shot.stat().st_size > 50_000  # a picture, not a blank page

    # the check can fail: a page that breaks is caught (console) and so is an empty plot
    broken = tmp_path / "broken.html"
    broken.write_text(
        text.replace(
            'dataset.checked = "yes";', 'dataset.checked = "yes"; undefinedFn();', 1
        ).replace('<figure data-plot="roc"><svg', '<figure data-plot="roc"><svg style="width:0"', 1)
    )
    shown = browse(broken, "--dump-dom")
    assert any("undefinedFn" in line for line in console_lines(shown))
    assert drawn(shown.stdout)["roc"] == "no"
