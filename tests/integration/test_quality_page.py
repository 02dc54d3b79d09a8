"""The worker's ``/quality``: after its learner learned labelled examples through the real
broker, the page answers with the bearer token only, and every plot draws in headless
Chromium (Debian's ``chromium``)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.integration.browser import browse, console_lines, drawn
from tests.integration.conftest import http_get, produce
from tests.integration.test_prometheus_scrape import _events as labelled_events

pytestmark = [pytest.mark.integration, pytest.mark.browser]

TOKEN = "quality-page-test-token-0123456789"
PLOTS = {"roc", "pr", "reliability", "threshold-churn", "threshold-sharing"}


def _non_loopback_address() -> str:
    """This host's address on its outward interface (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))
        address = s.getsockname()[0]
    assert not address.startswith("127."), "no non-loopback interface to test from"
    return address


def test_quality_page_of_the_learner_needs_the_token_and_draws_every_plot(
    worker_factory, kafka_bootstrap, tmp_path: Path
):
    worker = worker_factory(CHURNWATCH_API_TOKEN=TOKEN).start()
    messages = labelled_events()  # 40 accounts, a household verification outcome each
    produce(kafka_bootstrap, worker.settings.subscription_topic, messages)
    worker.wait_metric("churnwatch_model_examples_learned", 40)

    status, body = http_get(worker.url + "/quality", TOKEN)
    assert status == 200, body[-2000:]
    page = body.decode()
    assert "churnwatch live model quality" in page and "since it started" in page
    # the 40 sharing outcomes, half of them failed checks (positives)
    assert "<tr><td>sharing</td><td>40</td><td>20</td>" in page
    assert page.count("<svg") == len(PLOTS) and "alerts-per-day" not in page

    # no token, or a wrong one: refused, from another host and from this one alike
    outside = f"http://{_non_loopback_address()}:{worker.port}/quality"
    for url, token in ((outside, None), (outside, "wrong-token"), (worker.url + "/quality", None)):
        status, body = http_get(url, token)
        assert status == 401 and b"bearer token is required" in body, (url, token, body)
        assert b"<svg" not in body
    assert http_get(worker.url + "/healthz")[0] == 200  # the open endpoints stay open

    saved = tmp_path / "quality.html"
    saved.write_text(page, encoding="utf-8")
    shown = browse(saved, "--dump-dom")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert 'data-checked="yes"' in shown.stdout, "the page's own check did not run"
    assert drawn(shown.stdout) == dict.fromkeys(PLOTS, "yes")
    assert console_lines(shown) == []
