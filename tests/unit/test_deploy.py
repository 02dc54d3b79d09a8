"""Deployment artefacts: dashboards, alert rules, compose file, Dockerfile, docs.

Queries are checked against the sample names and labels that ``streams.metrics.Metrics``
really exports, and the files with the real tools: ``promtool`` (Debian package
``prometheus``), ``amtool`` (``prometheus-alertmanager``) and ``docker-compose``
(Debian package ``docker-compose``). A missing tool fails the test and names its
package: CI installs them.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from streams.metrics import Metrics
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
COMPOSE = ROOT / "docker-compose.yml"
EXPECTED_UIDS = {"churnwatch-pipeline", "churnwatch-models", "churnwatch-risk"}
EXPECTED_ALERTS = {
    "ChurnwatchWorkerDown",
    "ChurnwatchConsumerLagGrowing",
    "ChurnwatchDeadLetterRateHigh",
    "ChurnwatchModelQualityCollapse",
    "ChurnwatchNoEventsConsumed",
    "ChurnwatchInternalRecordsSkipped",
    "ChurnwatchWorkerNotReady",
    "ChurnwatchLearnerStalled",
    "ChurnwatchProcessingErrors",
    "ChurnwatchAlertVolumeSpike",
    "ChurnwatchModelCalibrationDrift",
}
TARGET_LABELS = {"job", "instance"}  # added by Prometheus to every scraped sample


# --- helpers -------------------------------------------------------------------------


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"'{name}' is not installed: apt-get install {package}")
    return path


def _run(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def _yaml(text: str) -> Any:
    """Parse YAML with PyYAML, or else with docker-compose's own interpreter (compose
    1.x parses its files with PyYAML, Debian's package depends on python3-yaml)."""
    try:
        import yaml
    except ImportError:
        compose = Path(_tool("docker-compose", "docker-compose"))
        interpreter = compose.read_text(errors="replace").splitlines()[0].removeprefix("#!")
        code = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
        out = subprocess.run(
            [*shlex.split(interpreter), "-c", code], input=text, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)
    return yaml.safe_load(text)


@functools.cache
def exported() -> dict[str, dict[str, set[str]]]:
    """Sample name -> {label name -> values seen} as the service exposes them
    (one child per labelled metric, so that labelled families show samples too)."""
    metrics = Metrics()
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase) and metric._labelnames:
            metric.labels(*("x" for _ in metric._labelnames))
    samples: dict[str, dict[str, set[str]]] = {"up": {}}
    for family in metrics.registry.collect():
        for sample in family.samples:
            labels = samples.setdefault(sample.name, {})
            for key, value in sample.labels.items():
                labels.setdefault(key, set()).add(value)
    return samples


def metric_families() -> set[str]:
    """Exposition names: counters with ``_total``, histograms without ``_bucket``."""
    suffix = {"counter": "_total"}
    return {f.name + suffix.get(f.type, "") for f in Metrics().registry.collect()}


def promql_problems(expr: str) -> list[str]:
    """Names and labels in ``expr`` that the service does not export."""
    known = exported()
    names = set(re.findall(r"\b(?:churnwatch|process|python)_\w+", expr))
    names |= set(re.findall(r"\bup\b", expr))
    problems = [f"unknown metric {n}" for n in sorted(names - known.keys())]
    labels = set(TARGET_LABELS)
    for name in names & known.keys():
        labels |= known[name].keys()
    grouping = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)"
    used = {lab.strip() for g in re.findall(grouping, expr) for lab in g.split(",")} - {""}
    for selector in re.findall(r"\{([^}]*)\}", expr):
        for label, value in re.findall(r'(\w+)\s*(?:=~|!~|!=|=)\s*"([^"]*)"', selector):
            used.add(label)
            bounds = set().union(*(known[n].get("le", set()) for n in names & known.keys()))
            if label == "le" and value not in bounds:
                problems.append(f"no bucket le={value!r}")
    problems += [f"unknown label {lab}" for lab in sorted(used - labels)]
    for name in names & known.keys():
        if name.endswith(("_total", "_bucket")) and not re.search(
            rf"\b(?:rate|increase)\(\s*{name}\b", expr
        ):
            problems.append(f"{name} used without rate() or increase()")
    return problems


@functools.cache
def yaml_file(relative: str) -> Any:
    return _yaml((ROOT / relative).read_text())


def dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in DASHBOARDS:
        for panel in dashboard(path)["panels"]:
            yield f"{path.name}: {panel['title']}", panel


# the compose file has no default for its secrets: config needs them set
SECRETS = {"CHURNWATCH_MODEL_KEY": "compose-test-model-key", "GRAFANA_ADMIN_PASSWORD": "pw",
           "CHURNWATCH_PSEUDONYM_KEY": "compose-test-pseudonym-key"}  # fmt: skip


@functools.cache
def compose_config(*args: str) -> dict[str, Any]:
    compose = _tool("docker-compose", "docker-compose")
    out = _run(compose, "-f", str(COMPOSE), *args, "config", env={**os.environ, **SECRETS})
    assert out.returncode == 0, out.stderr
    return _yaml(out.stdout)


def alert_rules() -> dict[str, dict[str, Any]]:
    groups = yaml_file("deploy/prometheus/alerts.yml")["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """(INSTRUCTION, arguments) per stage, continuation lines joined, ARGs expanded."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    args: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for line in lines:
        word, _, rest = line.partition(" ")
        rest = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), rest.strip())
        if word.upper() == "ARG" and "=" in rest and not stages:
            key, _, value = rest.partition("=")
            args[key] = value
        if word.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((word.upper(), rest))
    return stages


def dockerignored(path: str) -> bool:
    """Docker's rule: the last .dockerignore pattern matching the path or a parent wins."""

    def regex(pattern: str) -> re.Pattern[str]:
        out = pattern.replace(".", r"\.").replace("?", "[^/]")
        out = out.replace("**/", "\0").replace("**", ".*").replace("*", "[^/]*")
        return re.compile(out.replace("\0", "(.*/)?") + r"\Z")

    lines = (DEPLOY.parent / ".dockerignore").read_text().splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        rx = regex(pattern.lstrip("!").strip("/"))
        if any(rx.match(p) for p in prefixes):
            ignored = not negated
    return ignored


class _Probe(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802
        code = self.status if self.path in ("/healthz", "/readyz") else 404
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def probe_server() -> Iterator[type[_Probe]]:
    """A local HTTP server standing in for the worker; set ``.status`` to its answer."""
    handler = type("Probe", (_Probe,), {"status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    handler.port = server.server_address[1]  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


# --- the PromQL checker itself --------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("sum(rate(churnwatch_alert_total[5m]))", "unknown metric churnwatch_alert_total"),
        ("sum by (acount) (rate(churnwatch_alerts_total[5m]))", "unknown label acount"),
        ('churnwatch_score_bucket{le="0.33"}', "no bucket le='0.33'"),
        ("sum(churnwatch_alerts_total)", "churnwatch_alerts_total used without rate()"),
    ],
)
def test_promql_checker_catches_mistakes(expr: str, problem: str) -> None:
    assert any(p.startswith(problem) for p in promql_problems(expr)), promql_problems(expr)


def test_promql_checker_accepts_real_names_and_labels() -> None:
    expr = (
        'sum by (kind, action) (rate(churnwatch_alerts_total{kind="churn"}[5m]))'
        ' / on (instance) group_left count(up{job="churnwatch"})'
        " + histogram_quantile(0.9, sum by (le) (rate(churnwatch_score_bucket[5m])))"
    )
    assert promql_problems(expr) == []


# --- Grafana ----------------------------------------------------------------------------


def test_three_dashboards_with_stable_unique_uids() -> None:
    uids = [dashboard(p)["uid"] for p in DASHBOARDS]
    assert sorted(uids) == sorted(EXPECTED_UIDS)
    for path in DASHBOARDS:
        board = dashboard(path)
        assert board.get("id") is None, f"{path.name}: provisioned dashboards carry no id"
        assert "churnwatch" in board["tags"]


@pytest.mark.parametrize("name, panel", list(panels()), ids=[n for n, _ in panels()])
def test_panel_queries_exported_metrics_through_provisioned_datasource(
    name: str, panel: dict[str, Any]
) -> None:
    uid = "${datasource}"  # the dashboard's datasource variable (test_datasource_variable)
    assert panel["datasource"]["uid"] == uid
    assert panel["targets"], "panel without a query"
    for target in panel["targets"]:
        assert target["datasource"]["uid"] == uid
        expr = target["expr"]
        assert re.search(r"\b(?:sum|max|count|topk)\b", expr), (
            f"not aggregated over workers: {expr}"
        )
        assert promql_problems(expr) == [], expr
        if re.search(r"\b(?:process|python)_", expr):  # the client's collectors: any job has them
            assert 'job="churnwatch"' in expr, expr
    ref_ids = [t["refId"] for t in panel["targets"]]
    assert len(ref_ids) == len(set(ref_ids))


def test_datasource_variable_defaults_to_the_provisioned_prometheus() -> None:
    provisioned = yaml_file("deploy/grafana/provisioning/datasources/prometheus.yml")
    uid = provisioned["datasources"][0]["uid"]
    for path in DASHBOARDS:
        variables = {v["name"]: v for v in dashboard(path)["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource", path.name
        assert variables["datasource"]["query"] == "prometheus", path.name
        assert variables["datasource"]["current"]["value"] == uid, path.name


def test_threshold_variables_read_the_exported_thresholds() -> None:
    """The risk dashboard's threshold variables parse what the workers export."""
    board = dashboard(DEPLOY / "grafana/dashboards/risk-overview.json")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    m = Metrics()
    m.set_thresholds({"churn": (0.4, 0.3), "sharing": (0.85, 0.5)})
    for kind, want in (("churn", "0.4"), ("sharing", "0.85")):
        var = variables[f"{kind}_threshold"]
        query = var["query"]["query"]
        assert promql_problems(query) == [] and f'kind="{kind}"' in query
        value = m.alert_threshold.labels(kind, "raise")._value.get()
        # Grafana's query_result() output for the instant query, then the variable's regex
        line = f'{{kind="{kind}", level="raise"}} {value} 1733000000000'
        assert re.search(var["regex"].strip("/"), line).group(1) == want
        assert f"${kind}_threshold" in json.dumps(board["panels"])


def test_panels_fit_the_grid_without_overlap() -> None:
    for path in DASHBOARDS:
        boxes = [p["gridPos"] for p in dashboard(path)["panels"]]
        ids = [p["id"] for p in dashboard(path)["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for i, a in enumerate(boxes):
            assert 0 <= a["x"] and a["x"] + a["w"] <= 24, (path.name, a)
            for b in boxes[i + 1 :]:
                apart = (
                    a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"]
                    or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"]
                )  # fmt: skip
                assert apart, f"{path.name}: panels overlap at {a} and {b}"


def test_dashboards_show_every_exported_metric_and_the_requested_views() -> None:
    text = {
        p.name: " ".join(t["expr"] for pn in dashboard(p)["panels"] for t in pn["targets"])
        for p in DASHBOARDS
    }
    shown = " ".join(text.values())
    missing = {
        f for f in metric_families() if not re.search(rf"\b{f}(_bucket|_sum|_count)?\b", shown)
    }
    assert not missing, f"metrics on no dashboard: {sorted(missing)}"
    risk = text["risk-overview.json"]
    assert re.search(r"sum by \(action\) \(rate\(churnwatch_alerts_total", risk)
    assert "churnwatch_score_bucket" in risk and "churnwatch_alert_reasons_total" in risk
    assert "churnwatch_model_roc_auc" in text["model-quality.json"]
    assert "churnwatch_consumer_lag_messages" in text["pipeline-health.json"]


def test_grafana_provisioning_matches_compose_mounts() -> None:
    grafana = compose_config()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("/"))
    assert mounts[str(DEPLOY / "grafana/provisioning")] == "/etc/grafana/provisioning"
    provider = yaml_file("deploy/grafana/provisioning/dashboards/churnwatch.yml")
    assert mounts[str(DEPLOY / "grafana/dashboards")] == provider["providers"][0]["options"]["path"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["providers"][0]["options"]["path"] + "/")
    assert (DEPLOY / "grafana/dashboards" / Path(home).name).exists()


# --- Prometheus -------------------------------------------------------------------------


def test_promtool_check_config_and_rules() -> None:
    promtool = _tool("promtool", "prometheus")
    out = _run(promtool, "check", "config", str(DEPLOY / "prometheus/prometheus.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    out = _run(promtool, "check", "rules", str(ALERTS))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in out.stdout


def test_promtool_test_rules() -> None:
    promtool = _tool("promtool", "prometheus")
    out = _run(promtool, "test", "rules", str(DEPLOY / "prometheus/alerts_test.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_alert_rules_are_complete_and_use_exported_metrics() -> None:
    rules = alert_rules()
    assert set(rules) == EXPECTED_ALERTS
    for name, rule in rules.items():
        assert re.fullmatch(r"\d+m", rule.get("for", "")), f"{name}: needs a for: in minutes"
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert {"summary", "description"} <= rule["annotations"].keys(), name
        assert "docs/operations.md" in rule["annotations"]["description"], name
        assert promql_problems(rule["expr"]) == [], name
    assert 'up{job="churnwatch"}' in rules["ChurnwatchWorkerDown"]["expr"]


def test_every_rule_links_its_runbook_section() -> None:
    """``runbook_url`` ends in the GitHub anchor of the rule's section of operations.md."""
    headings = re.findall(r"^#+ (.+)$", (ROOT / "docs/operations.md").read_text(), re.M)
    anchors = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
    for name, rule in alert_rules().items():
        url = rule["annotations"]["runbook_url"]
        assert url.split("#")[0].endswith("/docs/operations.md"), name
        assert url.split("#")[1] == name.lower() in anchors, f"{name}: no section {url}"


def test_alertmanager_config_and_prometheus_sends_to_it() -> None:
    amtool = _tool("amtool", "prometheus-alertmanager")
    config = DEPLOY / "alertmanager/alertmanager.yml"
    out = _run(amtool, "check-config", str(config))
    assert out.returncode == 0, out.stdout + out.stderr
    routes = yaml_file("deploy/alertmanager/alertmanager.yml")["route"]
    assert routes["routes"][0]["matchers"] == ['severity="critical"']
    alerting = yaml_file("deploy/prometheus/prometheus.yml")["alerting"]["alertmanagers"]
    assert alerting[0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    service = compose_config()["services"]["alertmanager"]
    assert f"{config}:/etc/alertmanager/alertmanager.yml:ro" in service["volumes"]


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    spec = yaml_file("deploy/prometheus/alerts_test.yml")
    fires: set[str] = set()
    silent: set[str] = set()
    for case in spec["tests"]:
        for check in case["alert_rule_test"]:
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    assert fires == EXPECTED_ALERTS
    assert silent == EXPECTED_ALERTS


def test_prometheus_scrapes_every_compose_worker() -> None:
    config = yaml_file("deploy/prometheus/prometheus.yml")
    assert "alerts.yml" in config["rule_files"]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "churnwatch")
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    workers = {s for s in compose_config()["services"] if s.startswith("worker-")}
    assert targets == {f"{w}:6066" for w in workers}
    mounts = compose_config()["services"]["prometheus"]["volumes"]
    assert f"{ALERTS}:/etc/prometheus/alerts.yml:ro" in mounts


# --- docker-compose -----------------------------------------------------------------------


def test_compose_config_is_valid() -> None:
    compose = _tool("docker-compose", "docker-compose")
    env = {**os.environ, **SECRETS}
    out = _run(compose, "-f", str(COMPOSE), "config", "-q", env=env)
    assert out.returncode == 0, out.stderr
    out = _run(compose, "-f", str(COMPOSE), "config", "--profiles", env=env)
    assert out.stdout.split() == ["simulator"], "only the simulator sits behind a profile"


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_start_without_its_secrets(missing: str) -> None:
    env = {k: v for k, v in {**os.environ, **SECRETS}.items() if k != missing}
    out = _run(_tool("docker-compose", "docker-compose"), "-f", str(COMPOSE), "config", env=env)
    assert out.returncode != 0 and f"set {missing}" in out.stderr, out.stderr


def test_compose_defaults_open_nothing() -> None:
    services = compose_config()["services"]
    grafana = services["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == SECRETS["GRAFANA_ADMIN_PASSWORD"]
    assert not any("lifecycle" in arg for arg in services["prometheus"]["command"])
    assert services["worker-1"]["environment"]["CHURNWATCH_MODEL_KEY"] == "compose-test-model-key"


def test_the_secured_compose_variant_reaches_kafka_with_sasl_ssl_only(tmp_path: Path) -> None:
    (tmp_path / "kafka_password").write_text("pw\n")
    env = {**os.environ, **SECRETS, "KAFKA_TLS_DIR": str(tmp_path), "KAFKA_TLS_PASSWORD": "z",
           "KAFKA_PASSWORD_FILE": str(tmp_path / "kafka_password")}  # fmt: skip
    secured = ROOT / "deploy" / "compose.secured.yml"
    compose = _tool("docker-compose", "docker-compose")
    out = _run(compose, "-f", str(COMPOSE), "-f", str(secured), "config", env=env)
    assert out.returncode == 0, out.stderr
    services = _yaml(out.stdout)["services"]
    kafka = services["kafka"]["environment"]
    assert "EXTERNAL:SASL_SSL" in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]  # the host's
    assert [p.split(":")[-1] for p in services["kafka"]["ports"]] == ["9094/tcp"]
    for name in ("worker-1", "worker-2", "simulator"):
        worker = services[name]["environment"]
        assert worker["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9095"
        assert worker["CHURNWATCH_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert "CHURNWATCH_KAFKA_PASSWORD" not in worker  # a secret file, not the environment
        assert services[name]["depends_on"]["kafka-users"]["condition"] == (
            "service_completed_successfully"
        )


def test_compose_services_healthchecks_and_startup_order() -> None:
    services = compose_config("--profile", "simulator")["services"]
    assert set(services) == {
        "kafka", "worker-1", "worker-2", "simulator", "prometheus", "alertmanager", "grafana"
    }  # fmt: skip
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])
    for name, service in services.items():
        if name != "simulator":  # a one-shot producer: nothing to probe
            assert service["healthcheck"]["test"], name
    workers = [services["worker-1"], services["worker-2"]]
    for worker in workers:
        assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert worker["build"]["dockerfile"] == "deploy/Dockerfile"
        assert any(v.endswith(":/var/lib/churnwatch:rw") for v in worker["volumes"])
    app_ids = {w["environment"]["CHURNWATCH_APP_ID"] for w in workers}
    assert len(app_ids) == 1, "both workers must share one consumer group"
    host_ports = [w["ports"][0] for w in workers]
    assert len(set(host_ports)) == 2
    assert workers[0]["volumes"] != workers[1]["volumes"], "each worker needs its own state volume"
    assert services["simulator"]["profiles"] == ["simulator"]
    assert services["simulator"]["depends_on"]["worker-1"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_compose_tunables_come_from_the_environment() -> None:
    env = {**os.environ, **SECRETS, "CHURNWATCH_PARTITIONS": "12", "GRAFANA_HOST_PORT": "3300"}
    compose = _tool("docker-compose", "docker-compose")
    out = _run(compose, "-f", str(COMPOSE), "config", env=env)
    assert out.returncode == 0, out.stderr
    services = _yaml(out.stdout)["services"]
    assert services["worker-1"]["environment"]["CHURNWATCH_PARTITIONS"] == "12"
    assert services["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"] == "12"
    assert services["grafana"]["ports"][0].startswith("127.0.0.1:3300:3000")


def test_compose_readiness_probe_follows_readyz(probe_server: type[_Probe]) -> None:
    test = compose_config()["services"]["worker-1"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    env = {**os.environ, "CHURNWATCH_WEB_PORT": str(probe_server.port)}  # type: ignore[attr-defined]
    cmd = [sys.executable, *test[2:]]
    assert subprocess.run(cmd, env=env, timeout=30).returncode == 0
    probe_server.status = 503
    assert subprocess.run(cmd, env=env, timeout=30, capture_output=True).returncode != 0


# --- Dockerfile ---------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    final = stages[-1]
    assert final[0] == ("FROM", "python:3.11-slim")
    body = " ".join(f"{op} {rest}" for op, rest in final)
    assert "COPY --from=builder /opt/venv /opt/venv" in body
    assert not re.search(r"apt-get install|build-essential|\bgcc\b|pip install", body)
    users = [rest for op, rest in final if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert "CHURNWATCH_DATA_DIR=/var/lib/churnwatch" in body
    assert any(op == "VOLUME" and "/var/lib/churnwatch" in rest for op, rest in final)
    assert [rest for op, rest in final if op == "CMD"] == ['["churnwatch", "worker"]']


def test_dockerfile_healthcheck_probes_healthz(probe_server: type[_Probe], tmp_path: Path) -> None:
    (health,) = [rest for op, rest in dockerfile_stages()[-1] if op == "HEALTHCHECK"]
    command = health.split(" CMD ", 1)[1]
    assert "/healthz" in command
    (tmp_path / "python").symlink_to(sys.executable)  # the image's `python` is the venv's
    env = {
        **os.environ,
        "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}",
        "CHURNWATCH_WEB_PORT": str(probe_server.port),  # type: ignore[attr-defined]
    }
    assert subprocess.run(["sh", "-c", command], env=env, timeout=30).returncode == 0
    probe_server.status = 500
    failed = subprocess.run(["sh", "-c", command], env=env, timeout=30, capture_output=True)
    assert failed.returncode == 1  # Docker reads 1 as unhealthy (2 is reserved)


def test_build_context_holds_what_the_builder_copies_and_nothing_else() -> None:
    builder = dockerfile_stages()[0]
    sources = [
        src
        for op, rest in builder
        if op == "COPY" and "--from" not in rest
        for src in rest.split()[:-1]
    ]
    assert sources, "the builder copies nothing"
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: missing from the repository"
        assert not dockerignored(src), f"COPY {src}: excluded by .dockerignore"
    assert not dockerignored("streams/agents/accounts.py")
    outside = ["tests/unit/test_deploy.py", ".git/HEAD", ".venv/bin/python", "deploy/Dockerfile"]
    for path in [*outside, "streams/__pycache__/app.cpython-311.pyc", "models/x.pyc"]:
        assert dockerignored(path), path


# --- docs -------------------------------------------------------------------------------


def test_every_metric_and_alert_is_documented() -> None:
    metrics_doc = (ROOT / "docs/metrics.md").read_text()
    missing = {f for f in metric_families() if f"`{f}`" not in metrics_doc}
    assert not missing, f"docs/metrics.md lacks {sorted(missing)}"
    operations = (ROOT / "docs/operations.md").read_text()
    assert {a for a in EXPECTED_ALERTS if f"### {a}" not in operations} == set()


def test_operations_guide_states_the_compose_defaults() -> None:
    """The tunables table of docs/operations.md gives the defaults the compose file
    uses, and the compose file uses the worker's own defaults (logs aside: json)."""
    compose = dict(re.findall(r"\$\{(\w+):-([^}]*)\}", COMPOSE.read_text()))
    table = (ROOT / "docs/operations.md").read_text()
    checked = set()
    for names, defaults in re.findall(r"^\| ((?:`\w+`(?:, )?)+) \| ([^|]+) \|", table, re.M):
        names = re.findall(r"`(\w+)`", names)
        values = [v.strip().strip("`") for v in defaults.split(",")]
        if names[0] not in compose or len(values) != len(names):
            continue  # a row about something else, or one value described in words
        for name, value in zip(names, values, strict=True):
            assert compose[name] == value, f"{name}: compose {compose[name]!r}, docs {value!r}"
            checked.add(name)
    assert {"CHURNWATCH_CHURN_THRESHOLD", "CHURNWATCH_SHARING_THRESHOLD"} <= checked
    settings = dict(Settings().documented())
    for name, value in compose.items():
        if name.startswith("CHURNWATCH_") and name in settings and name != "CHURNWATCH_LOG_FORMAT":
            assert settings[name] == value, f"{name}: worker default {settings[name]!r}"


# --- reproducible installs ----------------------------------------------------------------


def _pins(lock: str) -> dict[str, str]:
    text = (DEPLOY / lock).read_text()
    return {
        n.lower().replace("_", "-"): v for n, v in re.findall(r"^([\w.-]+)==(\S+) \\$", text, re.M)
    }


def _requirement_names(specs: list[str]) -> set[str]:
    return {re.split(r"[<>=!~ \[;]", s, maxsplit=1)[0].lower().replace("_", "-") for s in specs}


def test_locks_pin_every_declared_dependency_with_hashes() -> None:
    """deploy/lock's output matches pyproject.toml: every dependency pinned, every pin
    hashed. A dependency added without refreshing the locks fails here."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime, test = _pins("requirements.lock"), _pins("requirements-test.lock")
    assert _requirement_names(project["dependencies"]) <= runtime.keys()
    extras = project["optional-dependencies"]
    assert _requirement_names(extras["test"] + extras["report"]) <= test.keys()
    for name, version in runtime.items():
        assert test.get(name) == version, f"{name}: the two locks disagree"
    for lock in ("requirements.lock", "requirements-test.lock"):
        blocks = re.split(r"\n(?=[\w.-]+==)", (DEPLOY / lock).read_text())
        for block in blocks[1:]:
            assert "--hash=sha256:" in block, f"{lock}: {block.splitlines()[0]} has no hash"


def test_image_and_dev_install_from_the_locks() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "pip install --require-hashes -r requirements.lock" in dockerfile
    assert "pip install --no-deps ." in dockerfile
    assert not dockerignored("deploy/requirements.lock")
    dev = (ROOT / "dev").read_text()
    assert "--require-hashes -r" in dev and "deploy/requirements-test.lock" in dev
    assert "pip install -q --no-deps -e ." in dev
