"""A single-writer online learner with prequential evaluation (no Kafka here).

``OnlineLearner`` wraps any River binary classifier (churn and sharing alike):

- ``predict_proba(x)`` scores and never changes the model;
- ``learn(x, y)`` first scores the example, updates the running metrics with
  that score, and only then learns it (prequential / test-then-train);
  an ``example_id`` among the last ``max_ids`` (2048) learned is ignored
  (an example the account agent published twice, see below);
- ``learned_offset``: the training-topic offset the learner learns on from
  (``learn_many(..., offset=)`` moves it, ``has_learned(offset)`` asks it); it
  travels in the snapshot, so a learner resumed from its checkpoint skips every
  re-delivered training message it already holds, however many;
- metrics: examples seen, positives, ROC AUC (exact up to a 1/1000 score
  grid), log loss, expected calibration error over ``n_bins`` equal-width
  bins, and the number of drifts ADWIN detected in the per-example log loss;
- ``snapshot(key)`` bumps ``version`` and returns the versioned bytes that
  ``from_bytes`` restores (model, metrics and all: the learner's checkpoint);
  ``model_bytes()`` / ``load_model()`` carry only the model and its id to the
  scoring workers;
- ``dump_bundle()`` / ``load_bundle()``: several learners in one JSON file, to
  move trained models between deployments (``churnwatch models``).

Snapshots are pickles (River models are object graphs), and unpickling runs
code, so every snapshot carries an HMAC-SHA256 of its bytes under a secret key
(``CHURNWATCH_MODEL_KEY``), checked in constant time *before* anything is
unpickled: bytes from a topic or a file that are not signed with the key raise
``SignatureError``. Snapshots of formats 1 and 2 (written before signing) are
refused the same way unless the caller vouches for them (``trust_unsigned``:
``churnwatch models export --trust-unsigned``, once, to re-sign a deployment's
own models on upgrade).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import pickle
from array import array
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from river import compose, drift

from models.linear import LinearScorer, linear_scorer

SNAPSHOT_VERSION = 3  # 3: signed (HMAC-SHA256 of the header and the pickle)
# 2: learned_offset, and 64-bit hashes of the last max_ids example ids; 1: every recent
# example id in full (migrated on read: see __setstate__). Both unsigned: trust_unsigned only
_UNSIGNED = (1, 2)
_MODEL_VERSION = 2  # 2: signed
_TAG = 32  # bytes of HMAC-SHA256
_MAGIC = b"CWLN"
_MODEL_MAGIC = b"CWMD"
MAX_IDS = 2048  # x 8 bytes: the checkpoint stays far below 32 KB
_GRID = 1000
_EPS = 1e-15
BUNDLE_FORMAT = "churnwatch-models"


def func_step(fn: Callable[[dict[str, float]], dict[str, float]]) -> tuple[str, Any]:
    """A pipeline step applying ``fn``, named after it whether ``fn`` is compiled or not
    (River names a compiled function's step after its type, not its name).

    >>> func_step(sorted)[0]
    'sorted'
    """
    return fn.__name__, compose.FuncTransformer(fn)


class SignatureError(ValueError):
    """Bytes that would be unpickled are not signed with the model key."""


def sign(head: bytes, payload: bytes, key: bytes) -> bytes:
    """``head`` + HMAC-SHA256(key, head + payload) + ``payload``.

    >>> raw = sign(b"CWMD\x02", b"data", b"k" * 32)
    >>> len(raw) == 5 + 32 + 4, verified(raw, 5, b"k" * 32)
    (True, b'data')
    """
    if not key:
        raise SignatureError("no model key: cannot sign a model snapshot")
    return head + hmac.new(key, head + payload, hashlib.sha256).digest() + payload


def verified(raw: bytes, head_len: int, key: bytes) -> bytes:
    """The payload of ``sign``'s output, or SignatureError (checked in constant time).

    >>> verified(sign(b"H", b"data", b"k" * 32), 1, b"x" * 32)
    Traceback (most recent call last):
    ...
    models.learner.SignatureError: signature does not match the model key (tampered, ...)
    """
    if not key:
        raise SignatureError("no model key: signed snapshots cannot be checked, so none is loaded")
    if len(raw) < head_len + _TAG:
        raise SignatureError("too short to carry a signature")
    head, tag, payload = raw[:head_len], raw[head_len : head_len + _TAG], raw[head_len + _TAG :]
    if not hmac.compare_digest(tag, hmac.new(key, head + payload, hashlib.sha256).digest()):
        raise SignatureError(
            "signature does not match the model key (tampered, or signed with another key)"
        )
    return payload


def last_step_input(model: compose.Pipeline, x: dict[str, float]) -> tuple[Any, dict[str, float]]:
    """A pipeline's last step, and what it is given for ``x``: ``x`` through the steps
    before it, as River's own ``predict_proba_one`` passes it on."""
    *head, last = model.steps.values()
    for step in head:
        x = step.transform_one(x)
    return last, x


class OnlineLearner:
    """Prequential wrapper around a River classifier.

    >>> from models.churn import make_churn_model
    >>> key = b"example-key-of-32-random-bytes.."
    >>> lrn = OnlineLearner(make_churn_model(), name="churn")
    >>> lrn.learn({"x": 1.0}, True, example_id="a:0")
    0.5
    >>> lrn.learn({"x": 1.0}, True, example_id="a:0") is None  # duplicate
    True
    >>> lrn.metrics()["examples"], lrn.model_id
    (1, 'churn-v0')
    >>> OnlineLearner.from_bytes(lrn.snapshot(key), key).model_id
    'churn-v1'

    Why both offsets and ids: re-delivery of the training topic after a crash
    (everything after the last committed offset, which can be an hour of
    examples) is what ``learned_offset`` makes idempotent, exactly and at no
    size. The id memory is only for the account agent's duplicates: it publishes
    examples before it persists its state, so a crash in between publishes the
    same (deterministic) example ids again, at new offsets, a few buffers or a
    restart later. 2048 ids cover that gap at any realistic label rate; an older
    duplicate is learned twice (one more SGD step on an example it has seen).
    """

    def __init__(
        self, model: Any, *, name: str = "model", n_bins: int = 10, max_ids: int = MAX_IDS
    ) -> None:
        if n_bins < 1 or max_ids < 0:
            raise ValueError("n_bins must be >= 1 and max_ids >= 0")
        self.model = model
        self._linear: tuple[Any, LinearScorer | None] | None = None  # (model, its scorer)
        self.name = name
        self.version = 0
        self.n_bins = n_bins
        self.max_ids = max_ids
        self.learned_offset: int | None = None  # None: unknown (a fresh or portable learner)
        self._ring = array("Q")  # hashes of the last max_ids example ids, oldest at _head
        self._head = 0
        self._seen: set[int] = set()  # the ring's hashes (not pickled: rebuilt on load)
        self.examples = 0
        self.positives = 0
        self.drifts = 0
        self._log_loss_sum = 0.0
        self._pos = [0] * _GRID
        self._neg = [0] * _GRID
        self._cal_n = [0] * n_bins
        self._cal_p = [0.0] * n_bins
        self._cal_y = [0] * n_bins
        self._adwin = drift.ADWIN()  # type: ignore[no-untyped-call]

    @property
    def model_id(self) -> str:
        return f"{self.name}-v{self.version}"

    def predict_proba(self, x: dict[str, float]) -> float:
        """Probability of the positive class; the model is not changed. A linear
        model is scored in one pass (``models.linear``), read off it again after
        it learns; any other through River's ``predict_proba_one``."""
        linear = self._linear
        if linear is None or linear[0] is not self.model:
            linear = self._linear = (self.model, linear_scorer(self.model))
        if linear[1] is not None:
            return linear[1].proba(x)
        return float(self.model.predict_proba_one(x).get(True, 0.0))

    def has_learned(self, offset: int) -> bool:
        """True if the training message at ``offset`` is already in this learner.

        >>> from models.churn import make_churn_model
        >>> lrn = OnlineLearner(make_churn_model())
        >>> lrn.has_learned(0), lrn.learn_many([({"x": 1.0}, True, "a:0")], offset=7)
        (False, 1)
        >>> lrn.learned_offset, lrn.has_learned(7), lrn.has_learned(8)
        (8, True, False)
        """
        return self.learned_offset is not None and offset < self.learned_offset

    def learn(self, x: dict[str, float], y: bool, *, example_id: str | None = None) -> float | None:
        """Score ``x``, record the score, then learn; returns the score (None: duplicate)."""
        if example_id is not None and not self._remember(example_id):
            return None
        p = self.predict_proba(x)
        self._record(p, bool(y))
        self.model.learn_one(x, bool(y))
        self._linear = None
        return p

    def learn_many(
        self,
        batch: list[tuple[dict[str, float], bool, str | None]],
        *,
        offset: int | None = None,
        scored: Callable[[int, float], None] | None = None,
    ) -> int:
        """Score every example of ``batch`` first, then learn them all; return how many.

        ``offset``: the training-topic offset of the last message the batch comes
        from; the learner then learns on from the next one (``learned_offset``).
        Leaving out the messages it ``has_learned`` is the caller's part.
        ``scored(i, p)``: called for each example learned, with its index in ``batch``
        and the probability it got before anything was learned (the live ``/quality``).

        Delayed labels arrive in bursts (one cancellation labels all of an
        account's pending snapshots at once). Learning one and then scoring its
        near-identical sibling would flatter the prequential metrics; scoring
        the whole burst first keeps them honest.

        >>> from models.churn import make_churn_model
        >>> lrn = OnlineLearner(make_churn_model(), name="churn")
        >>> lrn.learn_many([({"x": 1.0}, True, "a:0"), ({"x": 1.0}, True, "a:7")])
        2
        >>> lrn.metrics()["log_loss"] == -math.log(0.5)  # both scored before learning
        True
        """
        fresh = []
        for i, (x, y, example_id) in enumerate(batch):
            if example_id is None or self._remember(example_id):
                fresh.append((i, x, bool(y)))
        for i, x, y in fresh:
            p = self.predict_proba(x)
            self._record(p, y)
            if scored is not None:
                scored(i, p)
        for _, x, y in fresh:
            self.model.learn_one(x, y)
        self._linear = None
        if offset is not None:
            self.learned_offset = max(offset + 1, self.learned_offset or 0)
        return len(fresh)

    def metrics(self) -> dict[str, float]:
        """Running prequential metrics (NaN where undefined)."""
        n = self.examples
        return {
            "examples": n,
            "positives": self.positives,
            "roc_auc": self._roc_auc(),
            "log_loss": self._log_loss_sum / n if n else math.nan,
            "ece": (
                sum(abs(p - y) for p, y in zip(self._cal_p, self._cal_y, strict=True)) / n
                if n
                else math.nan
            ),
            "drifts": self.drifts,
            "version": self.version,
        }

    def calibration(self) -> list[tuple[float, float, int]]:
        """Per bin (mean predicted, observed positive rate, count), non-empty bins only."""
        return [
            (p / c, y / c, c)
            for p, y, c in zip(self._cal_p, self._cal_y, self._cal_n, strict=True)
            if c
        ]

    def snapshot(self, key: bytes) -> bytes:
        """Bump the version and return the snapshot bytes, signed with ``key``."""
        self.version += 1
        return self.to_bytes(key)

    def to_bytes(self, key: bytes, *, portable: bool = False) -> bytes:
        """The snapshot, signed with ``key``; ``portable=True`` leaves out the recent
        example ids and the training offset (they only mean something in the deployment
        they came from)."""
        if not portable:
            payload = pickle.dumps(self, protocol=5)
            return sign(_MAGIC + bytes([SNAPSHOT_VERSION]), payload, key)
        saved = self.learned_offset, self._ring, self._head, self._seen
        self.learned_offset, self._ring, self._head, self._seen = None, array("Q"), 0, set()
        try:
            return self.to_bytes(key)
        finally:
            self.learned_offset, self._ring, self._head, self._seen = saved

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_seen"], state["_linear"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "_ids" in state:  # a version-1 snapshot: its newest ids become the hashed memory
            ids = list(state.pop("_ids"))
            state["max_ids"] = cap = min(state.get("max_ids", MAX_IDS), MAX_IDS)
            state["_ring"] = array("Q", dict.fromkeys(map(_id_hash, ids[len(ids) - cap :])))
            state["_head"] = 0
            state["learned_offset"] = None  # unknown: the first resume relies on the ids
        self.__dict__.update(state)
        self._seen = set(self._ring)
        self._linear = None

    @classmethod
    def from_bytes(cls, raw: bytes, key: bytes, *, trust_unsigned: bool = False) -> OnlineLearner:
        """Restore a snapshot signed with ``key``; SignatureError before anything is
        unpickled if it is not; ValueError on another format or version. An unsigned
        snapshot (format 1 or 2) loads only with ``trust_unsigned``."""
        if raw[:4] != _MAGIC or len(raw) < 5:
            raise ValueError("not a learner snapshot")
        if raw[4] in _UNSIGNED and not trust_unsigned:
            raise SignatureError(
                f"unsigned learner snapshot (format {raw[4]}, from before churnwatch signed "
                "its snapshots): refused (re-sign your own with "
                "'churnwatch models export --trust-unsigned')"
            )
        if raw[4] not in (*_UNSIGNED, SNAPSHOT_VERSION):
            raise ValueError(f"unsupported learner snapshot version {raw[4]}")
        payload = raw[5:] if raw[4] in _UNSIGNED else verified(raw, 5, key)
        try:
            learner = pickle.loads(payload)  # noqa: S301 - signed, or vouched for
        except Exception as exc:  # a damaged snapshot fails in many ways: one error for all
            raise ValueError(f"unreadable learner snapshot ({type(exc).__name__})") from None
        if not isinstance(learner, cls):
            raise ValueError("not a learner snapshot")
        return learner

    def model_bytes(self, key: bytes) -> bytes:
        """The model alone, for scoring workers (small: no metrics, no id memory), signed."""
        payload = pickle.dumps((self.model_id, self.model))
        return sign(_MODEL_MAGIC + bytes([_MODEL_VERSION]), payload, key)

    def _remember(self, example_id: str) -> bool:
        """Remember ``example_id``; False if it is among the last ``max_ids`` already."""
        h = _id_hash(example_id)
        if h in self._seen:
            return False
        if self.max_ids == 0:
            return True
        if len(self._ring) < self.max_ids:
            self._ring.append(h)
        else:
            self._seen.discard(self._ring[self._head])
            self._ring[self._head] = h
            self._head = (self._head + 1) % self.max_ids
        self._seen.add(h)
        return True

    def _record(self, p: float, y: bool) -> None:
        self.examples += 1
        self.positives += y
        loss = -math.log(max(p, _EPS) if y else max(1.0 - p, _EPS))
        self._log_loss_sum += loss
        self._adwin.update(loss)  # type: ignore[no-untyped-call]
        self.drifts += self._adwin.drift_detected
        cell = min(int(p * _GRID), _GRID - 1)
        (self._pos if y else self._neg)[cell] += 1
        b = min(int(p * self.n_bins), self.n_bins - 1)
        self._cal_n[b] += 1
        self._cal_p[b] += p
        self._cal_y[b] += y

    def _roc_auc(self) -> float:
        """Mann-Whitney AUC on the score grid (ties within a cell count half)."""
        n_pos, n_neg = self.positives, self.examples - self.positives
        if n_pos == 0 or n_neg == 0:
            return math.nan
        below = 0
        wins = 0.0
        for pos, neg in zip(self._pos, self._neg, strict=True):
            wins += pos * (below + neg / 2)
            below += neg
        return wins / (n_pos * n_neg)


def _id_hash(example_id: str) -> int:
    """64 bits of BLAKE2b of the id: 8 bytes a remembered id, collisions ~never (2^-53)."""
    return int.from_bytes(hashlib.blake2b(example_id.encode(), digest_size=8).digest(), "little")


def load_model(raw: bytes, key: bytes) -> tuple[str, Any]:
    """Inverse of ``OnlineLearner.model_bytes``: ``(model_id, model)``.

    >>> from models.churn import make_churn_model
    >>> key = b"example-key-of-32-random-bytes.."
    >>> load_model(OnlineLearner(make_churn_model(), name="churn").model_bytes(key), key)[0]
    'churn-v0'
    """
    if raw[:4] != _MODEL_MAGIC or len(raw) < 5:
        raise ValueError("not a model snapshot")
    if raw[4] != _MODEL_VERSION:
        raise ValueError(f"unsupported model snapshot version {raw[4]}")
    payload = verified(raw, 5, key)
    try:
        model_id, model = pickle.loads(payload)  # noqa: S301 - signed
    except Exception as exc:
        raise ValueError(f"unreadable model snapshot ({type(exc).__name__})") from None
    return str(model_id), model


def dump_bundle(learners: Mapping[str, OnlineLearner], key: bytes, **meta: Any) -> bytes:
    """Learner snapshots (model, metrics, version), signed with ``key``, as one JSON
    document.

    Each model carries its prequential metrics in the clear, so a bundle can be
    inspected without loading it; ``meta`` adds free-form provenance.

    >>> from models.churn import make_churn_model
    >>> key = b"example-key-of-32-random-bytes.."
    >>> lrn = OnlineLearner(make_churn_model(), name="churn")
    >>> raw = dump_bundle({"churn": lrn}, key, seed=5)
    >>> doc = orjson.loads(raw)
    >>> doc["format"], doc["meta"], doc["models"]["churn"]["model_id"]
    ('churnwatch-models', {'seed': 5}, 'churn-v0')
    >>> load_bundle(raw, key)["churn"].name
    'churn'
    """
    models = {}
    for kind, learner in learners.items():
        stats = learner.metrics()
        models[kind] = {
            "model_id": learner.model_id,
            "metrics": {k: None if math.isnan(v) else v for k, v in stats.items()},
            "snapshot": base64.b64encode(learner.to_bytes(key, portable=True)).decode(),
        }
    doc = {"format": BUNDLE_FORMAT, "version": SNAPSHOT_VERSION, "meta": meta, "models": models}
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)


def load_bundle(
    raw: bytes, key: bytes, *, trust_unsigned: bool = False
) -> dict[str, OnlineLearner]:
    """Inverse of ``dump_bundle``; raises ValueError naming what is wrong (SignatureError
    for a snapshot not signed with ``key``, unless ``trust_unsigned`` and of format 1 or 2).

    >>> load_bundle(b"{}", b"k" * 32)
    Traceback (most recent call last):
    ...
    ValueError: not a churnwatch model bundle (format is None)
    """
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not a churnwatch model bundle: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
        fmt = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"not a churnwatch model bundle (format is {fmt!r})")
    learners = {}
    for kind, entry in (doc.get("models") or {}).items():
        try:
            snapshot = base64.b64decode(entry["snapshot"], validate=True)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"model {kind!r}: unreadable snapshot ({exc})") from None
        try:
            learners[kind] = OnlineLearner.from_bytes(snapshot, key, trust_unsigned=trust_unsigned)
        except SignatureError as exc:
            raise SignatureError(f"model {kind!r}: {exc}") from None
    return learners


IMPORT = "model_import"


def import_record(kind: str, learner: OnlineLearner, key: bytes) -> bytes:
    """A training-topic message that makes the learner replace its ``kind`` model.

    >>> from models.churn import make_churn_model
    >>> key = b"example-key-of-32-random-bytes.."
    >>> raw = import_record("churn", OnlineLearner(make_churn_model(), name="churn"), key)
    >>> kind, learner = read_import(orjson.loads(raw), key)
    >>> kind, learner.model_id
    ('churn', 'churn-v0')
    >>> read_import([{"model": "churn"}], key) is None  # a list of examples is not an import
    True
    """
    snapshot = base64.b64encode(learner.to_bytes(key, portable=True)).decode()
    return orjson.dumps({IMPORT: kind, "model_id": learner.model_id, "snapshot": snapshot})


def adopt_import(current: OnlineLearner, imported: OnlineLearner, offset: int) -> OnlineLearner:
    """The imported learner, ready to replace ``current`` at training offset ``offset``.

    It learns on from the message after the import (``learned_offset``), so a
    re-delivered import never replaces a model that has learned past it; and its
    version continues from ``current``'s, so model ids never go back: importing an
    older export (a rollback) gives the next version of the deployment, not the
    export's old number, and consumers that keep the newest score per account see it
    as newer.

    >>> from models.churn import make_churn_model
    >>> live = OnlineLearner(make_churn_model(), name="churn")
    >>> live.version, old = 300, OnlineLearner(make_churn_model(), name="churn")
    >>> old.version = 5
    >>> new = adopt_import(live, old, offset=41)
    >>> new.learned_offset, new.model_id, new.snapshot(b"k" * 32) and new.model_id
    (42, 'churn-v300', 'churn-v301')
    """
    imported.learned_offset = offset + 1
    imported.version = max(imported.version, current.version)
    return imported


def read_import(doc: Any, key: bytes) -> tuple[str, OnlineLearner] | None:
    """``(kind, learner)`` if ``doc`` (a decoded training message) is an import, else None.

    Raises ValueError for an import whose snapshot cannot be read or is not signed
    with ``key`` (never trusted unsigned: anyone who can write the topic could send one).
    """
    if not isinstance(doc, dict) or IMPORT not in doc:
        return None
    try:
        raw = base64.b64decode(doc["snapshot"], validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"model import: unreadable snapshot ({exc})") from None
    try:
        return str(doc[IMPORT]), OnlineLearner.from_bytes(raw, key)
    except SignatureError as exc:
        raise SignatureError(f"model import: {exc}") from None


@dataclass
class Training:
    """One training-topic message, read defensively (``read_training``)."""

    examples: list[dict[str, Any]] = field(default_factory=list)
    imported: tuple[str, OnlineLearner] | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)  # (kind, why)


def read_training(
    raw: bytes | None, kinds: Collection[str] = ("churn", "sharing"), key: bytes = b""
) -> Training:
    """The examples of well-formed shape, or the model import (signed with ``key``), in a
    training message; a ``(kind, why)`` problem for the message or each example that is
    neither (``bad_signature`` for an import not signed with ``key``). Never raises.

    >>> ok = {"model": "churn", "example_id": "a:0", "snapshot_ts": 0,
    ...       "features": {"x": 1.0}, "label": True}
    >>> t = read_training(orjson.dumps([ok, {"x": 1}]))
    >>> len(t.examples), t.problems
    (1, [('bad_shape', "example 1: 'model' is not one of churn, sharing")])
    >>> read_training(b"").problems[0][0], read_training(b'{"model_import": "churn"}').problems
    ('not_json', [('bad_import', "model import: unreadable snapshot ('snapshot')")])
    """
    out = Training()
    try:
        doc = orjson.loads(raw or b"")
    except orjson.JSONDecodeError as exc:
        out.problems.append(("not_json", str(exc)))
        return out
    if isinstance(doc, dict) and IMPORT in doc:
        try:
            kind, learner = read_import(doc, key)  # type: ignore[misc]
            if kind not in kinds:
                raise ValueError(f"model import: unknown model {kind!r}")
            out.imported = kind, learner
        except SignatureError as exc:
            out.problems.append(("bad_signature", str(exc)))
        except ValueError as exc:
            out.problems.append(("bad_import", str(exc)))
        return out
    if not isinstance(doc, list):
        out.problems.append(("bad_shape", f"not a JSON array of examples ({type(doc).__name__})"))
        return out
    for i, ex in enumerate(doc):
        why = _example_shape(ex, kinds)
        if why is None:
            out.examples.append(ex)
        else:
            out.problems.append(("bad_shape", f"example {i}: {why}"))
    return out


_MAX_FEATURE = 1e9  # our features are small numbers: a huge one would ruin the weights


def _example_shape(ex: Any, kinds: Collection[str]) -> str | None:
    if not isinstance(ex, dict):
        return "not an object"
    if ex.get("model") not in kinds:
        return f"'model' is not one of {', '.join(kinds)}"
    if not isinstance(ex.get("example_id"), str):
        return "'example_id' is not a string"
    if type(ex.get("label")) is not bool:
        return "'label' is not true or false"
    for name in ("snapshot_ts", "labelled_ts"):
        if (name in ex or name == "snapshot_ts") and type(ex.get(name)) is not int:
            return f"{name!r} is not an integer"
    features = ex.get("features")
    if not isinstance(features, dict):
        return "'features' is not an object"
    for name, v in features.items():
        if type(v) not in (int, float) or not -_MAX_FEATURE <= v <= _MAX_FEATURE:
            return f"feature {name!r} is not a finite number of sensible size"
    return None
