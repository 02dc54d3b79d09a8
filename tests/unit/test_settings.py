import re
from pathlib import Path

import pytest

from streams.settings import Settings, SettingsError

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_match_the_contract():
    s = Settings.from_env({})
    assert (s.subscription_topic, s.usage_topic) == ("subscription-events", "usage-events")
    assert s.dead_letter_topic == "churnwatch-dead-letter"
    assert (s.scores_topic, s.alerts_topic) == ("risk-scores", "risk-alerts")
    assert s.max_message_bytes == 1_048_576
    assert s.allowed_lateness_s == 3600 and s.session_expiry_s == 4 * 3600
    assert s.churn_horizon_days == 30 and s.score_delta == 0.02
    assert s.web_port == 6066


def test_env_names_and_types():
    s = Settings.from_env(
        {"KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092", "CHURNWATCH_WEB_PORT": "7000",
         "CHURNWATCH_CREATE_TOPICS": "false", "CHURNWATCH_SCORE_DELTA": "0.05",
         "CHURNWATCH_DATA_DIR": "/var/lib/cw"}
    )  # fmt: skip
    assert s.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert s.web_port == 7000 and s.create_topics is False and s.score_delta == 0.05
    assert str(s.state_dir) == "/var/lib/cw"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHURNWATCH_WEB_PORT": "http"}, "CHURNWATCH_WEB_PORT"),
        ({"CHURNWATCH_PARTITIONS": "0"}, "CHURNWATCH_PARTITIONS must be >= 1"),
        ({"CHURNWATCH_CHURN_RESET": "0.9"}, "CHURNWATCH_CHURN_RESET"),
        ({"CHURNWATCH_CREATE_TOPICS": "maybe"}, "CHURNWATCH_CREATE_TOPICS"),
        ({"CHURNWATCH_LOG_FORMAT": "xml"}, "CHURNWATCH_LOG_FORMAT"),
        ({"CHURNWATCH_HEARTBEAT_INTERVAL_S": "5"}, "CHURNWATCH_HEARTBEAT_INTERVAL_S"),
    ],
)
def test_bad_values_fail_fast_naming_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        Settings().web_port = 1  # type: ignore[misc]


def test_readme_documents_every_setting_with_its_default():
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| `([^`]*)` \|", README.read_text(), re.M))
    documented = dict(Settings().documented())
    assert rows == documented
