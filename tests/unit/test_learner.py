"""OnlineLearner: prequential order, metrics against scikit-learn, snapshots."""

from __future__ import annotations

import base64
import math
import pickle
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from models.churn import make_churn_model
from models.learner import OnlineLearner, SignatureError, load_model

KEY = b"unit-test-model-key-0123456789ab"


class Spy:
    """A River-like classifier that records the order of calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.p = 0.5

    def predict_proba_one(self, x: dict[str, float]) -> dict[bool, float]:
        self.calls.append(("predict", x["i"]))
        return {True: self.p, False: 1 - self.p}

    def learn_one(self, x: dict[str, float], y: bool) -> None:
        self.calls.append(("learn", x["i"]))
        self.p = 0.9 if y else 0.1


def test_every_example_is_scored_before_it_is_learned() -> None:
    spy = Spy()
    lrn = OnlineLearner(spy)
    scores = [lrn.learn({"i": float(i)}, i % 2 == 0) for i in range(4)]
    assert spy.calls == [(k, float(i)) for i in range(4) for k in ("predict", "learn")]
    # the returned score is the one before learning the example
    assert scores == [0.5, 0.9, 0.1, 0.9]


def test_predict_does_not_change_the_model() -> None:
    lrn = OnlineLearner(make_churn_model())
    for i in range(50):
        lrn.learn({"x": float(i % 7), "y": 1.0}, i % 3 == 0)
    before = pickle.dumps(lrn.model)
    lrn.predict_proba({"x": 100.0, "y": -5.0})
    assert pickle.dumps(lrn.model) == before


def test_metrics_match_scikit_learn() -> None:
    rng = random.Random(3)
    lrn = OnlineLearner(make_churn_model(), n_bins=10)
    ys, ps = [], []
    for _ in range(2000):
        x = {"a": rng.gauss(0, 1), "b": rng.gauss(0, 1)}
        y = rng.random() < 1 / (1 + math.exp(-(2 * x["a"] - 1)))
        p = lrn.learn(x, y)
        assert p is not None
        ys.append(y)
        ps.append(p)
    m = lrn.metrics()
    assert m["examples"] == 2000 and m["positives"] == sum(ys)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(ys, ps), abs=2e-3)
    assert m["log_loss"] == pytest.approx(log_loss(ys, ps), rel=1e-9)
    assert m["roc_auc"] > 0.75
    cal = lrn.calibration()
    assert sum(c for _, _, c in cal) == 2000


def test_expected_calibration_error_by_hand() -> None:
    spy = Spy()
    lrn = OnlineLearner(spy, n_bins=2)
    spy.learn_one = lambda x, y: None  # type: ignore[method-assign]
    spy.p = 0.2
    for y in (True, False, False, False):  # bin [0, .5): mean p .2, rate .25
        lrn.learn({"i": 0.0}, y)
    spy.p = 0.9
    for y in (True, True, False, False):  # bin [.5, 1]: mean p .9, rate .5
        lrn.learn({"i": 0.0}, y)
    assert lrn.metrics()["ece"] == pytest.approx((4 * 0.05 + 4 * 0.4) / 8)
    assert lrn.calibration() == [(pytest.approx(0.2), 0.25, 4), (pytest.approx(0.9), 0.5, 4)]


def test_undefined_metrics_are_nan_and_duplicates_are_ignored() -> None:
    lrn = OnlineLearner(make_churn_model(), max_ids=2)
    assert math.isnan(lrn.metrics()["roc_auc"]) and math.isnan(lrn.metrics()["log_loss"])
    assert lrn.learn({"x": 1.0}, True, example_id="e1") == 0.5
    assert lrn.learn({"x": 1.0}, True, example_id="e1") is None
    lrn.learn({"x": 1.0}, True, example_id="e2")
    lrn.learn({"x": 1.0}, True, example_id="e3")  # evicts e1 (bounded memory)
    assert lrn.learn({"x": 1.0}, True, example_id="e1") is not None
    assert lrn.metrics()["examples"] == 4


def test_drift_is_detected_when_the_concept_flips() -> None:
    rng = random.Random(0)
    lrn = OnlineLearner(make_churn_model(lr=0.05))
    for i in range(6000):
        x = {"a": rng.gauss(0, 1)}
        y = (x["a"] > 0) if i < 3000 else (x["a"] < 0)
        lrn.learn(x, y)
    assert lrn.metrics()["drifts"] >= 1


def test_snapshot_versions_and_round_trip() -> None:
    lrn = OnlineLearner(make_churn_model(), name="churn")
    for i in range(30):
        lrn.learn({"x": float(i % 5)}, i % 2 == 0, example_id=str(i))
    raw1 = lrn.snapshot(KEY)
    raw2 = lrn.snapshot(KEY)
    assert lrn.version == 2 and lrn.model_id == "churn-v2"
    back = OnlineLearner.from_bytes(raw2, KEY)
    assert back.model_id == "churn-v2" and back.metrics() == lrn.metrics()
    assert back.predict_proba({"x": 3.0}) == lrn.predict_proba({"x": 3.0})
    assert back.learn({"x": 1.0}, True, example_id="3") is None  # remembers ids
    assert OnlineLearner.from_bytes(raw1, KEY).version == 1
    with pytest.raises(ValueError, match="version"):
        OnlineLearner.from_bytes(raw2[:4] + bytes([7]) + raw2[5:], KEY)
    with pytest.raises(ValueError):
        OnlineLearner.from_bytes(b"nope", KEY)


def test_same_seed_same_metrics() -> None:
    def run() -> dict[str, float]:
        rng = random.Random(11)
        lrn = OnlineLearner(make_churn_model("arf", n_models=3, seed=4))
        for _ in range(300):
            x = {"a": rng.random(), "b": rng.random()}
            lrn.learn(x, x["a"] > 0.6)
        return lrn.metrics()

    assert run() == run()


def test_model_bytes_carry_only_the_model_and_its_id() -> None:
    lrn = OnlineLearner(make_churn_model(), name="churn")
    for i in range(200):
        lrn.learn({"x": float(i % 5)}, i % 2 == 0, example_id=str(i))
    lrn.snapshot(KEY)
    model_id, model = load_model(lrn.model_bytes(KEY), KEY)
    assert model_id == "churn-v1"
    assert model.predict_proba_one({"x": 2.0}) == lrn.model.predict_proba_one({"x": 2.0})
    assert len(lrn.model_bytes(KEY)) < len(lrn.to_bytes(KEY))
    with pytest.raises(ValueError):
        load_model(lrn.to_bytes(KEY), KEY)


def test_damaged_snapshots_raise_value_error_only() -> None:
    """A damaged snapshot read from a topic must be reported, never crash its reader."""
    import pickle

    lrn = OnlineLearner(make_churn_model(), name="churn")
    raw = lrn.snapshot(KEY)
    for bad in (raw[:10], raw[:5] + b"\x80\x05junk", raw[:5] + pickle.dumps({"x": 1}), b"CWLN\x01"):
        with pytest.raises(ValueError):
            OnlineLearner.from_bytes(bad, KEY)


def test_read_training_skips_every_kind_of_garbage() -> None:
    from models.learner import import_record, read_training

    ok = {"model": "sharing", "example_id": "a:1", "snapshot_ts": 5, "labelled_ts": 9,
          "features": {"x": 1.0, "n": 3}, "label": False}  # fmt: skip
    bad_examples = [
        {**ok, "model": "other"}, {**ok, "label": 1}, {**ok, "snapshot_ts": "5"},
        {**ok, "labelled_ts": None}, {**ok, "features": [1.0]}, {**ok, "features": {"x": "1"}},
        {**ok, "features": {"x": 1e300}}, {**ok, "features": {"x": True}}, 7, None,
    ]  # fmt: skip
    t = read_training(orjson.dumps([ok, *bad_examples]))
    assert t.examples == [ok] and t.imported is None
    assert [k for k, _ in t.problems] == ["bad_shape"] * len(bad_examples)
    for raw, kind in [
        (b"", "not_json"), (b"\x00\xff", "not_json"), (b"[1", "not_json"),
        (b'{"x": 1}', "bad_shape"), (b"42", "bad_shape"),
        (b'{"model_import": "churn", "snapshot": "!!"}', "bad_import"),
        (b'{"model_import": "churn", "snapshot": "Q1dMTgE="}', "bad_signature"),  # CWLN 1
    ]:  # fmt: skip
        t = read_training(raw, key=KEY)
        assert (t.examples, t.imported, [k for k, _ in t.problems]) == ([], None, [kind]), raw
    good = import_record("churn", OnlineLearner(make_churn_model(), name="churn"), KEY)
    assert read_training(good, key=KEY).imported[0] == "churn"
    assert read_training(good, key=b"another-key-0123456789abcdefghij").problems[0][0] == (
        "bad_signature"
    )
    assert read_training(good).problems[0][0] == "bad_signature"  # no key: no import
    wrong_kind = orjson.loads(good)
    wrong_kind["model_import"] = "billing"
    assert read_training(orjson.dumps(wrong_kind), key=KEY).problems[0][0] == "bad_import"


def _messages(n: int, per: int, seed: int = 5) -> list[tuple[int, list[tuple[dict, bool, str]]]]:
    """``n`` training messages ``(offset, examples)`` of ``per`` distinct examples each."""
    rng = random.Random(seed)
    return [
        (
            off,
            [({"a": rng.gauss(0, 1)}, rng.random() < 0.4, f"acct-{off}-{i}:0") for i in range(per)],
        )
        for off in range(n)
    ]


def _consume(lrn: OnlineLearner, messages: list[tuple[int, list[Any]]]) -> None:
    """What the learner agent does with a batch: skip the messages the learner holds."""
    fresh = [ex for off, batch in messages if not lrn.has_learned(off) for ex in batch]
    lrn.learn_many(fresh, offset=messages[-1][0])


def test_a_resumed_learner_skips_by_offset_what_its_snapshot_holds() -> None:
    """Resumed from a checkpoint, the learner is re-sent everything after the committed
    offset (here: far more examples than its id memory holds) and learns each once."""
    msgs = _messages(40, 25)
    once = OnlineLearner(make_churn_model(), name="churn", max_ids=8)
    for i in range(0, 40, 5):
        _consume(once, msgs[i : i + 5])

    lrn = OnlineLearner(make_churn_model(), name="churn", max_ids=8)
    for i in range(0, 20, 5):
        _consume(lrn, msgs[i : i + 5])
    checkpoint = lrn.snapshot(KEY)  # holds offsets 0-19; the commit is older, at offset 10
    _consume(lrn, msgs[20:30])  # learned, then the worker is killed before a snapshot
    resumed = OnlineLearner.from_bytes(checkpoint, KEY)
    assert resumed.learned_offset == 20
    assert resumed.has_learned(19) and not resumed.has_learned(20)
    for i in range(10, 40, 5):  # re-delivered from the committed offset on
        _consume(resumed, msgs[i : i + 5])
    assert resumed.metrics() | {"version": 0} == once.metrics() | {"version": 0}
    assert resumed.metrics()["examples"] == 40 * 25
    assert resumed.model.predict_proba_one({"a": 0.3}) == once.model.predict_proba_one({"a": 0.3})
    assert resumed.learned_offset == 40
    # a batch wholly below the offset changes nothing, not even the offset
    _consume(resumed, msgs[:3])
    assert resumed.learned_offset == 40 and resumed.metrics()["examples"] == 40 * 25


def test_a_duplicate_published_at_a_new_offset_is_dropped_by_the_id_memory() -> None:
    """The account agent publishes examples again after a crash before it saved its state:
    same example ids, new offsets. The id memory (kept in the snapshot) drops them."""
    msgs = _messages(4, 10)
    lrn = OnlineLearner(make_churn_model(), name="churn")
    _consume(lrn, msgs[:2])
    lrn = OnlineLearner.from_bytes(lrn.snapshot(KEY), KEY)
    _consume(lrn, [(2, msgs[1][1] + msgs[2][1])])
    assert lrn.metrics()["examples"] == 30 and lrn.learned_offset == 3


def test_a_checkpoint_stays_small_after_100k_examples() -> None:
    """Issue #12's target: the learner's checkpoint <= 32 KB (it was ~600 KB at the
    old id cap of 20k: every recent example id in full)."""
    from models.engine import Models

    rng = random.Random(2)
    lrn = Models.fresh().churn  # the worker's default
    names = [f"feature_{k}" for k in range(12)]
    for off in range(100):
        batch = [
            ({k: rng.random() for k in names}, rng.random() < 0.3, f"acct-{j:07d}:{j}")
            for j in range(off * 1000, off * 1000 + 1000)
        ]
        assert lrn.learn_many(batch, offset=off) == 1000
    raw = lrn.snapshot(KEY)
    assert len(raw) <= 32 * 1024, len(raw)
    back = OnlineLearner.from_bytes(raw, KEY)
    assert back.metrics()["examples"] == 100_000 and back.learned_offset == 100
    assert back.learn(dict.fromkeys(names, 0.5), True, example_id="acct-0099999:99999") is None


def test_a_version_1_snapshot_loads_only_when_trusted() -> None:
    """Existing changelogs and bundles hold unsigned version-1 snapshots (every recent id in
    full, no offset): refused unless vouched for; then the newest ids become the hashed
    memory, the offset is unknown, and what is written again is signed."""
    from models.learner import SNAPSHOT_VERSION, dump_bundle, load_bundle

    raw = (Path(__file__).parent / "data" / "learner-v1-churn.snapshot").read_bytes()
    assert raw[4] == 1 and SNAPSHOT_VERSION == 3
    with pytest.raises(SignatureError, match="unsigned learner snapshot .format 1"):
        OnlineLearner.from_bytes(raw, KEY)
    lrn = OnlineLearner.from_bytes(raw, KEY, trust_unsigned=True)
    assert lrn.model_id == "churn-v1" and lrn.metrics()["examples"] == 40
    assert lrn.learned_offset is None and not lrn.has_learned(0)
    assert 0.0 < lrn.predict_proba({"x": 2.0}) < 1.0
    assert lrn.learn({"x": 1.0}, True, example_id="acct-39:1780000000039") is None  # remembered
    assert lrn.learn({"x": 1.0}, True, example_id="acct-40:1780000000040") is not None
    lrn.learn_many([({"x": 1.0}, False, "acct-41:0")], offset=12)
    again = OnlineLearner.from_bytes(lrn.snapshot(KEY), KEY)
    assert again.learned_offset == 13 and again.metrics()["examples"] == 42
    assert again.learn({"x": 1.0}, True, example_id="acct-0:1780000000000") is None
    old_bundle = orjson.dumps(
        {
            "format": "churnwatch-models",
            "version": 1,
            "models": {"churn": {"snapshot": base64.b64encode(raw).decode()}},
        }
    )
    with pytest.raises(SignatureError, match="model 'churn': unsigned"):
        load_bundle(old_bundle, KEY)
    bundle = load_bundle(old_bundle, KEY, trust_unsigned=True)
    trusted = OnlineLearner.from_bytes(raw, KEY, trust_unsigned=True)
    assert bundle["churn"].metrics() == trusted.metrics()
    portable = load_bundle(dump_bundle({"churn": again}, KEY), KEY)["churn"]
    assert portable.learned_offset is None  # an offset of another deployment's topic
    assert portable.learn({"x": 1.0}, True, example_id="acct-0:1780000000000") is not None


def test_crafted_pickles_run_no_code_whatever_the_format_claims(crafted_pickle) -> None:
    from models.learner import load_bundle, read_training, sign

    evil, marker = crafted_pickle
    forged_tag = b"CWLN\x03" + bytes(32) + evil
    other_key = sign(b"CWLN\x03", evil, b"not-the-deployment-key-987654321")
    for raw in (b"CWLN\x01" + evil, b"CWLN\x02" + evil, forged_tag, other_key):
        with pytest.raises(SignatureError):
            OnlineLearner.from_bytes(raw, KEY)
        with pytest.raises(SignatureError):
            OnlineLearner.from_bytes(raw, b"")  # no key: nothing is loaded either
        b64 = base64.b64encode(raw).decode()
        imported = read_training(orjson.dumps({"model_import": "churn", "snapshot": b64}), key=KEY)
        assert [kind for kind, _ in imported.problems] == ["bad_signature"]
        bundle = orjson.dumps(
            {"format": "churnwatch-models", "models": {"churn": {"snapshot": b64}}}
        )
        with pytest.raises(SignatureError):
            load_bundle(bundle, KEY)
    with pytest.raises(SignatureError):
        load_model(b"CWMD\x02" + bytes(32) + evil, KEY)
    assert not marker.exists()
    # a genuine snapshot with one byte changed is refused too
    good = OnlineLearner(make_churn_model(), name="churn").snapshot(KEY)
    with pytest.raises(SignatureError, match="tampered"):
        OnlineLearner.from_bytes(good[:-1] + bytes([good[-1] ^ 1]), KEY)
