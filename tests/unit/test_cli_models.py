"""``churnwatch models train`` and ``show`` (no broker: export/import are integration tests)."""

import base64

import orjson
import pytest

from models.learner import load_bundle
from models.replay import replay
from models.simulator import SimConfig, simulate
from streams.cli import main

SIM = SimConfig(accounts=20, days=50, seed=2)
KEY = "unit-test-model-key-0123456789ab"


@pytest.fixture(autouse=True)
def model_key(monkeypatch):
    monkeypatch.setenv("CHURNWATCH_MODEL_KEY", KEY)


def test_train_learns_what_replay_learns_and_show_prints_it(tmp_path, capsys):
    events = list(simulate(SIM))
    path = tmp_path / "events.jsonl"
    lines = [orjson.dumps(e) for e in events]
    path.write_bytes(b"\n".join([lines[0], b"not json", b"[1, 2]", *lines[1:]]) + b"\n")
    bundle = tmp_path / "models.json"

    assert main(["models", "train", str(path), "--out", str(bundle), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "2 lines not JSON objects" in out

    learned = load_bundle(bundle.read_bytes(), KEY.encode())
    expected = replay(events).models  # the same pipeline, without the two bad lines
    for kind in ("churn", "sharing"):
        assert learned[kind].metrics() == expected.get(kind).metrics()
        assert learned[kind].examples > 0
    assert orjson.loads(bundle.read_bytes())["meta"]["events"] == len(events)

    assert main(["models", "show", str(bundle)]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in shown] == ["churn", "sharing"]
    assert f"{learned['churn'].examples:,} examples" in shown[0]


def test_unreadable_bundles_and_inputs_are_clear_errors(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"format": "something-else"}')
    assert main(["models", "show", str(bad)]) == 2
    assert "not a churnwatch model bundle (format is 'something-else')" in capsys.readouterr().err
    assert main(["models", "show", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err

    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n")
    out = tmp_path / "m.json"
    assert main(["models", "train", str(empty), "--out", str(out), "--quiet"]) == 1
    assert "no valid event" in capsys.readouterr().err and not out.exists()
    assert main(["models", "train", str(tmp_path / "nope.jsonl"), "--out", str(out)]) == 2


def test_show_refuses_unsigned_or_foreign_bundles_and_runs_no_code(
    tmp_path, capsys, monkeypatch, crafted_pickle
):
    payload, marker = crafted_pickle
    evil = base64.b64encode(b"CWLN\x02" + payload).decode()
    bundle = tmp_path / "evil.json"
    bundle.write_bytes(orjson.dumps({"format": "churnwatch-models",
                                     "models": {"churn": {"snapshot": evil}}}))  # fmt: skip
    assert main(["models", "show", str(bundle)]) == 2
    assert "model 'churn': unsigned learner snapshot (format 2" in capsys.readouterr().err
    assert not marker.exists()

    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(e) for e in simulate(SIM)))
    signed = tmp_path / "models.json"
    assert main(["models", "train", str(events), "--out", str(signed), "--quiet"]) == 0
    monkeypatch.setenv("CHURNWATCH_MODEL_KEY", "another-deployments-key-abcdefgh")
    assert main(["models", "show", str(signed)]) == 2
    assert "signature does not match the model key" in capsys.readouterr().err
    monkeypatch.delenv("CHURNWATCH_MODEL_KEY")
    assert main(["models", "show", str(signed)]) == 2
    assert "configuration error: CHURNWATCH_MODEL_KEY is not set" in capsys.readouterr().err


def test_a_bundle_of_another_key_is_read_only_with_that_key_given(tmp_path, capsys, monkeypatch):
    from streams.cli_models import read_bundle

    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(e) for e in simulate(SIM)))
    bundle = tmp_path / "models.json"
    assert main(["models", "train", str(events), "--out", str(bundle), "--quiet"]) == 0
    old_key = tmp_path / "old.key"
    old_key.write_text(KEY + "\n")
    monkeypatch.setenv("CHURNWATCH_MODEL_KEY", "the-rotated-new-key-0123456789")
    assert read_bundle(bundle, False) is None
    assert "signature does not match" in capsys.readouterr().err
    assert set(read_bundle(bundle, False, old_key)) == {"churn", "sharing"}


def test_report_starts_from_a_trained_bundle(tmp_path, capsys):
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(e) for e in simulate(SIM)) + b"\n")
    bundle, page = tmp_path / "models.json", tmp_path / "report.html"
    assert main(["models", "train", str(events), "--out", str(bundle), "--quiet"]) == 0
    args = ["report", str(events), "--bundle", str(bundle), "--out", str(page), "--quiet"]
    assert main(args) == 0
    assert "labelled examples" in capsys.readouterr().out and page.exists()
    assert main([*args[:3], str(tmp_path / "missing.json"), *args[4:]]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_calibrate_sharing_fits_a_table_the_worker_accepts_and_the_levels_to_use(tmp_path, capsys):
    """Verified accounts whose share of sharers rises with the uncalibrated score: the
    command writes knots that CHURNWATCH_SHARING_CALIBRATION reads, and the levels it
    prints put the alerts where the uncalibrated 0.7 / 0.5 did."""
    import random
    import re

    from models.sharing import calibrate
    from streams.settings import Settings

    rng = random.Random(3)
    lines = []
    for i in range(1000):
        s = rng.random()
        key = "score" if i % 2 else "sharing_score"  # a risk-scores record's field is read too
        lines.append(orjson.dumps({key: round(s, 4), "shared": rng.random() < s**2}))
    verified, out = tmp_path / "verified.jsonl", tmp_path / "calibration.json"
    verified.write_bytes(b"\n".join(lines) + b"\n")
    assert main(["models", "calibrate-sharing", str(verified), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1,000 accounts" in printed and "expected calibration error" in printed
    env = dict(re.findall(r"(CHURNWATCH_SHARING_\w+)=(\S+)", printed))
    assert env["CHURNWATCH_SHARING_CALIBRATION"] == str(out)
    cfg = Settings.from_env(env).engine_config()
    table = cfg.sharing_calibration
    assert table == tuple(tuple(k) for k in orjson.loads(out.read_bytes()))
    assert cfg.sharing_alert.threshold == calibrate(0.7, table)
    assert cfg.sharing_alert.reset == calibrate(0.5, table)
    assert calibrate(0.5, table) == pytest.approx(0.25, abs=0.08)  # the true share at 0.5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"score": 0.3}\n', "verified.jsonl:1: not an object with 'score'"),
        (b'{"score": 0.3, "shared": true}\nnot json\n', "verified.jsonl:2: not an object"),
        (b'{"score": 1.3, "shared": true}\n', "verified.jsonl:1: 'score' must be in"),
        (b'{"score": 0.3, "shared": 1}\n', "'shared' a boolean"),
        (b'{"score": 0.3, "shared": true}\n' * 300, "300 accounts, 300 shared"),
    ],
)
def test_calibrate_sharing_refuses_a_file_it_cannot_fit(tmp_path, capsys, content, message):
    verified = tmp_path / "verified.jsonl"
    verified.write_bytes(content)
    out = tmp_path / "calibration.json"
    assert main(["models", "calibrate-sharing", str(verified), "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
