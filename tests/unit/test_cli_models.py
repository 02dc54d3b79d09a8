"""``churnwatch models train`` and ``show`` (no broker: export/import are integration tests)."""

import orjson

from models.learner import load_bundle
from models.replay import replay
from models.simulator import SimConfig, simulate
from streams.cli import main

SIM = SimConfig(accounts=20, days=50, seed=2)


def test_train_learns_what_replay_learns_and_show_prints_it(tmp_path, capsys):
    events = list(simulate(SIM))
    path = tmp_path / "events.jsonl"
    lines = [orjson.dumps(e) for e in events]
    path.write_bytes(b"\n".join([lines[0], b"not json", b"[1, 2]", *lines[1:]]) + b"\n")
    bundle = tmp_path / "models.json"

    assert main(["models", "train", str(path), "--out", str(bundle), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "2 lines not JSON objects" in out

    learned = load_bundle(bundle.read_bytes())
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
