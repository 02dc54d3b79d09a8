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
    assert s.action_window_days == 30 and s.engine_config().action_window_ms == 30 * 86_400_000
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


def test_the_action_window_reaches_the_engine():
    s = Settings.from_env({"CHURNWATCH_ACTION_WINDOW_DAYS": "7.5"})
    assert s.engine_config().action_window_ms == int(7.5 * 86_400_000)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHURNWATCH_WEB_PORT": "http"}, "CHURNWATCH_WEB_PORT"),
        ({"CHURNWATCH_PARTITIONS": "0"}, "CHURNWATCH_PARTITIONS must be >= 1"),
        ({"CHURNWATCH_CHURN_RESET": "0.9"}, "CHURNWATCH_CHURN_RESET"),
        ({"CHURNWATCH_ACTION_WINDOW_DAYS": "0"}, "CHURNWATCH_ACTION_WINDOW_DAYS must be > 0"),
        ({"CHURNWATCH_CREATE_TOPICS": "maybe"}, "CHURNWATCH_CREATE_TOPICS"),
        ({"CHURNWATCH_LOG_FORMAT": "xml"}, "CHURNWATCH_LOG_FORMAT"),
        ({"CHURNWATCH_HEARTBEAT_INTERVAL_S": "5"}, "CHURNWATCH_HEARTBEAT_INTERVAL_S"),
        ({"CHURNWATCH_INPUT_LIVE_S": "-1"}, r"CHURNWATCH_INPUT_LIVE_S must be in \[0, "),
        (
            {"CHURNWATCH_INPUT_LIVE_S": "61", "CHURNWATCH_ALLOWED_LATENESS_S": "60"},
            "CHURNWATCH_INPUT_LIVE_S must be in .*CHURNWATCH_ALLOWED_LATENESS_S",
        ),
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


def test_secrets_come_from_env_or_a_file_and_are_never_shown(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("s3cret-from-a-file\n")
    env = {"CHURNWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "CHURNWATCH_KAFKA_USERNAME": "cw", "CHURNWATCH_KAFKA_PASSWORD_FILE": str(secret),
           "CHURNWATCH_MODEL_KEY": "m" * 32}  # fmt: skip
    s = Settings.from_env(env)
    assert s.kafka_password == "s3cret-from-a-file" and s.model_key == "m" * 32
    assert "s3cret" not in repr(s) and "m" * 32 not in repr(s)
    assert (s.shown("kafka_password"), s.shown("model_key"), s.shown("api_token")) == (
        "<set>", "<set>", "")  # fmt: skip
    with pytest.raises(SettingsError, match="not both"):
        Settings.from_env({**env, "CHURNWATCH_KAFKA_PASSWORD": "x"})
    with pytest.raises(SettingsError, match="CHURNWATCH_API_TOKEN_FILE: cannot read"):
        Settings.from_env({"CHURNWATCH_API_TOKEN_FILE": str(tmp_path / "missing")})


def test_config_prints_no_secret(monkeypatch, capsys):
    from streams.cli import main

    monkeypatch.setenv("CHURNWATCH_API_TOKEN", "api-token-that-must-not-show")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "api-token-that-must-not-show" not in out
    assert re.search(r"CHURNWATCH_API_TOKEN +default= +current=<set>", out)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHURNWATCH_KAFKA_SECURITY_PROTOCOL": "TLS"}, "must be one of PLAINTEXT, SSL"),
        ({"CHURNWATCH_KAFKA_SASL_MECHANISM": "GSSAPI"}, "must be one of PLAIN, SCRAM"),
        ({"CHURNWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "SASL_SSL needs CHURNWATCH_KAFKA_USERNAME"),
        ({"CHURNWATCH_KAFKA_CA_FILE": "/etc/hostname"}, "is set but CHURNWATCH_KAFKA_SECURITY_PROTOCOL is PLAINTEXT"),
        ({"CHURNWATCH_KAFKA_SECURITY_PROTOCOL": "SSL", "CHURNWATCH_KAFKA_CA_FILE": "/nope.pem"}, "no such file"),
        ({"CHURNWATCH_MODEL_KEY": "short"}, "CHURNWATCH_MODEL_KEY must be at least 16"),
        ({"CHURNWATCH_API_TOKEN": "short"}, "CHURNWATCH_API_TOKEN must be at least 16"),
    ],
)  # fmt: skip
def test_bad_security_settings_fail_fast(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_the_model_key_is_required_where_snapshots_are_read():
    with pytest.raises(SettingsError, match="CHURNWATCH_MODEL_KEY is not set"):
        Settings().require_model_key()
    assert Settings(model_key="k" * 16).require_model_key() == b"k" * 16


def test_the_sharing_levels_and_calibration_reach_the_engine(tmp_path):
    from models.sharing import CALIBRATION, calibrate

    cfg = Settings.from_env({}).engine_config()
    # the defaults alert where the score before its calibration did, at 0.7 / 0.5
    assert cfg.sharing_calibration == CALIBRATION
    assert (cfg.sharing_alert.threshold, cfg.sharing_alert.reset) == (
        calibrate(0.7),
        calibrate(0.5),
    )
    assert Settings.from_env({"CHURNWATCH_SHARING_CALIBRATION": "off"}).engine_config(
    ).sharing_calibration == ()  # fmt: skip
    own = tmp_path / "calibration.json"
    own.write_text("[[0, 0.01], [0.4, 0.3], [1, 0.9]]")
    s = Settings.from_env({"CHURNWATCH_SHARING_CALIBRATION": str(own)})
    assert s.engine_config().sharing_calibration == ((0.0, 0.01), (0.4, 0.3), (1.0, 0.9))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("{", "is not JSON"),
        ('[["a", 1]]', "pairs"),
        ("[[0, 0.1], [0.9, 0.8]]", "from 0 to 1"),
        ("[[0, 0.1], [0.5, 1.2], [1, 1.5]]", r"within \[0, 1\]"),
        ("[[0, 0.3], [0.5, 0.2], [1, 0.9]]", "increase strictly"),
    ],
)
def test_a_bad_sharing_calibration_fails_fast_naming_the_variable(tmp_path, content, message):
    path = tmp_path / "calibration.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SettingsError, match=f"CHURNWATCH_SHARING_CALIBRATION: .*{message}"):
        Settings.from_env({"CHURNWATCH_SHARING_CALIBRATION": str(path)})
