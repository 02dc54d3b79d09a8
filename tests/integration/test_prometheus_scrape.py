"""A real Prometheus scrapes a worker that processed events; its HTTP API shows the values.

Also: ``promtool check metrics`` accepts the worker's exposition.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from importlib.metadata import version
from pathlib import Path

import orjson
import pytest

from streams.devbroker import free_port
from tests.integration.conftest import produce

pytestmark = [pytest.mark.integration, pytest.mark.prometheus]

T0 = 1_767_225_600_000


def _require(tool: str) -> str:
    path = shutil.which(tool)
    assert path, (
        f"'{tool}' is missing: install Debian's 'prometheus' package (apt-get install prometheus)"
    )
    return path


def _events() -> list[tuple[bytes, bytes]]:
    msgs = []
    for a in range(40):
        acc = f"p-{a}"
        evs = [
            {"event_id": f"{acc}-s", "type": "subscription_started", "account_id": acc, "ts": T0,
             "plan": "p", "price": 5.0, "currency": "EUR", "billing_period": "month",
             "max_streams": 1},
            {"event_id": f"{acc}-l", "type": "login", "account_id": acc, "ts": T0 + 1000,
             "device_id": "d1"},
            # labels for the sharing model: half fail the household check
            {"event_id": f"{acc}-v", "type": "household_verification", "account_id": acc,
             "ts": T0 + 2000, "device_id": "d9", "outcome": "failed" if a % 2 else "verified"},
        ]  # fmt: skip
        if a % 10 == 0:
            evs.append({"event_id": f"{acc}-c", "type": "subscription_cancelled",
                        "account_id": acc, "ts": T0 + 3000})  # fmt: skip
        if a == 0:  # its win_back alert worked
            evs.append({"event_id": f"{acc}-r", "type": "subscription_reactivated",
                        "account_id": acc, "ts": T0 + 4000, "plan": "p", "price": 5.0,
                        "max_streams": 1})  # fmt: skip
        msgs += [(acc.encode(), orjson.dumps(e)) for e in evs]
    return msgs


def _query(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as resp:
        doc = orjson.loads(resp.read())
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


def _value(base: str, promql: str) -> float | None:
    result = _query(base, promql)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_worker_metrics(worker_factory, kafka_bootstrap, tmp_path: Path):
    prometheus, promtool = _require("prometheus"), _require("promtool")
    worker = worker_factory().start()
    messages = _events()
    produce(kafka_bootstrap, worker.settings.subscription_topic, messages)
    worker.wait_metric("churnwatch_events_applied_total", len(messages))
    worker.wait_metric("churnwatch_model_examples_learned", 40)

    with urllib.request.urlopen(worker.url + "/metrics", timeout=5) as resp:
        exposition = resp.read()
    check = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert b"_created" not in exposition  # no creation-timestamp series (streams.metrics)
    # a poller asks for the samples it reads only (name[], as prometheus_client serves it)
    assert worker.metrics("churnwatch_events_applied_total", "churnwatch_ready") == {
        "churnwatch_events_applied_total": len(messages), "churnwatch_ready": 1.0}  # fmt: skip

    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: churnwatch\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{worker.port}']}}]\n"
    )
    proc = subprocess.Popen(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"),
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        consumed = None
        while time.monotonic() < deadline:
            try:
                consumed = _value(base, "sum(churnwatch_events_consumed_total)")
            except OSError:
                consumed = None
            if consumed == len(messages):
                break
            time.sleep(0.5)
        log = (tmp_path / "prometheus.log").read_text(errors="replace")[-2000:]
        assert consumed == len(messages), log
        assert _value(base, 'up{job="churnwatch"}') == 1
        assert _value(base, "sum(churnwatch_events_applied_total)") == len(messages)
        by_type = {r["metric"]["type"]: float(r["value"][1])
                   for r in _query(base, "sum by (type) (churnwatch_events_consumed_total)")}  # fmt: skip
        assert by_type == {"subscription_started": 40, "login": 40,
                           "household_verification": 40, "subscription_cancelled": 4,
                           "subscription_reactivated": 1}  # fmt: skip
        win_backs = _value(base, 'sum(churnwatch_alerts_total{kind="churn",action="win_back"})')
        assert win_backs == 4
        auc = _value(base, 'max(churnwatch_model_roc_auc{model="sharing"})')
        assert auc is not None and 0.0 <= auc <= 1.0
        assert _value(base, 'max(churnwatch_model_examples_learned{model="sharing"})') == 40
        # what the dashboards and alert rules read besides the pipeline counters
        assert _value(base, "max(churnwatch_ready)") == 1
        raise_at = 'max(churnwatch_alert_threshold{kind="churn", level="raise"})'
        assert _value(base, raise_at) == worker.settings.churn_threshold
        assert _value(base, 'sum(churnwatch_dead_letters_total{kind="not_json"})') == 0
        assert _value(base, 'sum(churnwatch_alert_outcomes_total{kind="sharing"})') is not None
        # what the actions achieved: one win-back converted, the others still in their window
        outcomes = {(r["metric"]["action"], r["metric"]["outcome"]): float(r["value"][1])
                    for r in _query(base, 'sum by (action, outcome) '
                                          '(churnwatch_action_outcomes_total{kind="churn"})')}  # fmt: skip
        assert outcomes[("win_back", "reactivated")] == 1
        assert sum(outcomes.values()) == 1
        builds = _query(base, "max by (version, faust, river) (churnwatch_build_info)")
        assert [b["metric"]["version"] for b in builds] == [version("churnwatch")]
        assert _value(base, 'max(process_resident_memory_bytes{job="churnwatch"})') > 10e6
        bins = _query(base, 'max by (bin, stat) (churnwatch_model_calibration{model="sharing"})')
        assert bins and all(0.0 <= float(b["value"][1]) <= 1.0 for b in bins)
        assert {b["metric"]["stat"] for b in bins} == {"predicted", "observed"}
        # the loop probe runs 4 times a second from the start: over 5 s of probes by now
        assert _value(base, "sum(churnwatch_event_loop_delay_seconds_count)") > 20
    finally:
        proc.terminate()
        proc.wait(20)
