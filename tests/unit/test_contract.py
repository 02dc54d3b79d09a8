"""Unit tests of the input-side wire contract (models/contract.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from models.contract import (
    AMOUNT_FIELDS,
    ERROR_KINDS,
    EVENT_TYPES,
    MAX_RAW_CHARS,
    MAX_TS_MS,
    SUBSCRIPTION_TYPES,
    USAGE_TYPES,
    DeadLetter,
    Event,
    decode_batch,
    encode_batch,
    parse_message,
    parse_ts,
    topic_kind,
)

TS = "2026-03-01T12:00:00Z"
TS_MS = 1_772_366_400_000
GEO = {"lat": 48.85, "lon": 2.35, "country": "FR", "city": "Paris"}

# Each type with its fields, written from CONTRACT.md: (required, optional).
EXAMPLES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "subscription_started": (
        {"plan": "basic", "price": 9.99, "currency": "EUR", "billing_period": "month"}
        | {"max_streams": 2},
        {"country": "DE", "channel": "web"},
    ),
    "plan_changed": ({"plan": "premium", "price": 17, "max_streams": 4}, {}),
    "price_changed": ({"price": 0}, {}),
    "payment_succeeded": ({"amount": 9.99}, {}),
    "payment_failed": ({"amount": 9.99}, {"reason": "card_declined"}),
    "subscription_cancelled": ({}, {"reason": "too_expensive"}),
    "subscription_reactivated": ({"plan": "basic", "price": 9.99, "max_streams": 1}, {}),
    "support_contacted": ({}, {"topic": "billing"}),
    "household_verification": ({"device_id": "d1", "outcome": "verified"}, {}),
    "extra_member_added": ({}, {"member_id": "m1"}),
    "account_erased": ({}, {}),
    "login": ({"device_id": "d1"}, {"ip": "10.0.0.1", "geo": GEO, "device_type": "tv"}),
    "playback_started": (
        {"session_id": "s1", "device_id": "d1"},
        {"profile_id": "p1", "content_id": "c1", "ip": "10.0.0.1", "geo": GEO}
        | {"device_type": "mobile"},
    ),
    "playback_stopped": ({"session_id": "s1"}, {"watched_s": 1200.5}),
    "activity": ({"action": "like"}, {"quantity": 2, "device_id": "d1", "ip": "::1", "geo": GEO}),
}
REQUIRED = [
    (t, f) for t, (req, _) in EXAMPLES.items() for f in ("event_id", "account_id", "ts", *req)
]
OPTIONAL = [(t, f) for t, (_, opt) in EXAMPLES.items() for f in opt]


def event(etype: str = "login", full: bool = True, **changes: Any) -> dict[str, Any]:
    required, optional = EXAMPLES[etype]
    base = {"event_id": "e-1", "type": etype, "account_id": "a-1", "ts": TS, **required}
    return base | (optional if full else {}) | changes


def parse(value: Any, **kwargs: Any) -> tuple[list[Event], list[DeadLetter]]:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return parse_message(raw, topic="usage-events", partition=2, offset=40, **kwargs)


def rejected(value: Any) -> DeadLetter:
    events, dead = parse(value)
    assert events == [] and len(dead) == 1
    assert dead[0].kind in ERROR_KINDS and dead[0].error.startswith(dead[0].kind + ": ")
    return dead[0]


def test_examples_cover_every_type() -> None:
    assert EXAMPLES.keys() == EVENT_TYPES


@pytest.mark.parametrize("etype", sorted(EVENT_TYPES))
@pytest.mark.parametrize("full", [True, False])
def test_valid_event_of_each_type(etype: str, full: bool) -> None:
    required, optional = EXAMPLES[etype]
    events, dead = parse(event(etype, full))
    assert dead == []
    assert events == [Event("e-1", etype, "a-1", TS_MS, required | (optional if full else {}))]


@pytest.mark.parametrize("etype", sorted(EVENT_TYPES))
def test_round_trip(etype: str) -> None:
    (e,), _ = parse(event(etype))
    assert parse(e.to_dict()) == ([e], [])


def test_unknown_extra_fields_are_dropped_also_inside_geo() -> None:
    (e,), _ = parse(event("login", vip=True, geo=GEO | {"alt": 3}))
    assert e.fields == {"device_id": "d1", "ip": "10.0.0.1", "geo": GEO, "device_type": "tv"}


@pytest.mark.parametrize(("etype", "field"), OPTIONAL)
def test_optional_null_counts_as_absent(etype: str, field: str) -> None:
    (e,), dead = parse(event(etype, **{field: None}))
    assert dead == [] and field not in e.fields


def test_geo_optional_parts_may_be_null_or_absent() -> None:
    (e,), _ = parse(event("login", geo={"lat": 0, "lon": -180, "city": None}))
    assert e.fields["geo"] == {"lat": 0, "lon": -180}


@pytest.mark.parametrize(("etype", "field"), REQUIRED)
@pytest.mark.parametrize("how", ["absent", "null"])
def test_missing_required_field(etype: str, field: str, how: str) -> None:
    obj = event(etype)
    if how == "absent":
        del obj[field]
    else:
        obj[field] = None
    dead = rejected(obj)
    assert dead.kind == "missing_field"
    assert dead.error == f"missing_field: '{field}' is required for type '{etype}'"


def test_missing_type() -> None:
    obj = event()
    del obj["type"]
    assert rejected(obj).error == "missing_field: 'type' is required"


@pytest.mark.parametrize("value", [1, True, ["login"], {"t": "login"}])
def test_type_of_wrong_type(value: Any) -> None:
    assert rejected(event(type=value)).kind == "wrong_type"


@pytest.mark.parametrize("value", ["", "Login", "logout", "login "])
def test_unknown_type(value: str) -> None:
    dead = rejected(event(type=value))
    assert dead.kind == "unknown_type" and repr(value) in dead.error


def test_known_type_accepted_on_either_topic() -> None:
    raw = orjson.dumps(event("payment_failed"))
    events, _ = parse_message(raw, topic="usage-events", partition=0, offset=0)
    assert [e.type for e in events] == ["payment_failed"]


BAD_VALUES = [
    # (type, field, value, kind)
    ("login", "event_id", "", "invalid_value"),
    ("login", "event_id", "x" * 129, "invalid_value"),
    ("login", "event_id", 7, "wrong_type"),
    ("login", "account_id", "", "invalid_value"),
    ("login", "account_id", "é" * 129, "invalid_value"),
    ("login", "account_id", ["a"], "wrong_type"),
    ("subscription_started", "plan", 3, "wrong_type"),
    ("subscription_started", "price", -0.01, "invalid_value"),
    ("subscription_started", "price", "9.99", "wrong_type"),
    ("subscription_started", "price", True, "wrong_type"),
    ("subscription_started", "currency", "eur", "invalid_value"),
    ("subscription_started", "currency", "EU", "invalid_value"),
    ("subscription_started", "currency", "EURO", "invalid_value"),
    ("subscription_started", "currency", "ÉUR", "invalid_value"),
    ("subscription_started", "currency", "E1R", "invalid_value"),
    ("subscription_started", "billing_period", "week", "invalid_value"),
    ("subscription_started", "billing_period", "Month", "invalid_value"),
    ("subscription_started", "max_streams", 0, "invalid_value"),
    ("subscription_started", "max_streams", 2.0, "wrong_type"),
    ("subscription_started", "max_streams", True, "wrong_type"),
    ("subscription_started", "country", "de", "invalid_value"),
    ("subscription_started", "country", "DEU", "invalid_value"),
    ("subscription_started", "channel", 1, "wrong_type"),
    ("plan_changed", "max_streams", "2", "wrong_type"),
    ("price_changed", "price", -1, "invalid_value"),
    ("payment_succeeded", "amount", "9.99", "wrong_type"),
    ("payment_failed", "amount", False, "wrong_type"),
    ("payment_failed", "reason", {"code": 5}, "wrong_type"),
    ("household_verification", "outcome", "ok", "invalid_value"),
    ("household_verification", "device_id", 12, "wrong_type"),
    ("login", "device_type", "fridge", "invalid_value"),
    ("login", "device_type", 1, "wrong_type"),
    ("login", "ip", 167772161, "wrong_type"),
    ("login", "geo", [48.8, 2.3], "wrong_type"),
    ("login", "geo", "48.8,2.3", "wrong_type"),
    ("login", "geo", {"lat": 48.8}, "wrong_type"),
    ("login", "geo", {"lat": "48.8", "lon": 2.3}, "wrong_type"),
    ("login", "geo", {"lat": True, "lon": 2.3}, "wrong_type"),
    ("login", "geo", {"lat": 90.5, "lon": 2.3}, "invalid_value"),
    ("login", "geo", {"lat": 0, "lon": -180.01}, "invalid_value"),
    ("login", "geo", {"lat": 0, "lon": 0, "country": 33}, "wrong_type"),
    ("playback_stopped", "watched_s", -1, "invalid_value"),
    ("playback_stopped", "watched_s", "60", "wrong_type"),
    ("activity", "quantity", "1", "wrong_type"),
    ("activity", "action", None, "missing_field"),
]


@pytest.mark.parametrize(("etype", "field", "value", "kind"), BAD_VALUES)
def test_bad_field_value(etype: str, field: str, value: Any, kind: str) -> None:
    dead = rejected(event(etype, **{field: value}))
    assert dead.kind == kind
    assert f"'{field}'" in dead.error and f"type '{etype}'" in dead.error


def test_error_sentence_names_field_rule_and_value() -> None:
    dead = rejected(event("price_changed", price=-2))
    assert dead.error == "invalid_value: 'price' must be >= 0 for type 'price_changed', got -2"
    dead = rejected(event("price_changed", price="2"))
    assert dead.error == "wrong_type: 'price' must be a number for type 'price_changed', got string"


@pytest.mark.parametrize(
    ("etype", "field", "value"),
    [
        ("subscription_started", "price", 0),
        ("subscription_started", "price", 18_446_744_073_709_551_615),
        ("subscription_started", "max_streams", 1),
        ("subscription_started", "billing_period", "year"),
        ("payment_succeeded", "amount", -5),
        ("activity", "quantity", -1.5),
        ("playback_stopped", "watched_s", 0),
        ("login", "geo", {"lat": -90, "lon": 180}),
        ("login", "device_id", ""),
        ("household_verification", "outcome", "expired"),
    ],
)
def test_edge_values_accepted(etype: str, field: str, value: Any) -> None:
    (e,), dead = parse(event(etype, **{field: value}))
    amount = field in AMOUNT_FIELDS  # amounts are read as floats, whole or not
    assert dead == [] and e.fields[field] == (float(value) if amount else value)
    assert type(e.fields[field]) is float or not amount


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2026-03-01T12:00:00Z", TS_MS),
        ("2026-03-01T12:00:00.5Z", TS_MS + 500),
        ("2026-03-01T12:00:00.123999999Z", TS_MS + 123),
        ("2026-03-01T13:30:00+01:30", TS_MS),
        ("2026-03-01T06:00:00-06:00", TS_MS),
        ("2026-03-01T12:00:00-00:00", TS_MS),
        ("2026-03-01t12:00:00z", TS_MS),
        ("2026-03-01 12:00:00Z", TS_MS),
        ("2026-03-01T11:59:60Z", TS_MS),  # leap second: the next second
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T01:00:00+01:00", 0),
        ("2024-02-29T00:00:00Z", 1_709_164_800_000),
        ("9999-12-31T23:59:59.999999Z", MAX_TS_MS),
    ],
)
def test_parse_ts_rfc3339(text: str, ms: int) -> None:
    assert parse_ts(text) == ms


@pytest.mark.parametrize(
    "text",
    [
        "2026-03-01T12:00:00",  # naive
        "2026-03-01",
        "2026-03-01T12:00Z",
        "2026-03-01T12:00:00+0100",
        "2026-03-01T12:00:00+01",
        "2026-03-01T12:00:00.Z",
        "2026-03-01T12:00:00Z\n",
        " 2026-03-01T12:00:00Z",
        "2026-03-01T12:00:00 Z",
        "2026-W09-1T12:00:00Z",
        "２０２６-03-01T12:00:00Z",  # non-ASCII digits
        "2026-02-29T12:00:00Z",
        "2026-13-01T12:00:00Z",
        "2026-03-00T12:00:00Z",
        "0000-03-01T12:00:00Z",
        "2026-03-01T24:00:00Z",
        "2026-03-01T12:60:00Z",
        "2026-03-01T12:00:61Z",
        "9999-12-31T23:59:60Z",  # the leap second would be in year 10000
        "2026-03-01T12:00:00+24:00",
        "2026-03-01T12:00:00+01:60",
        "1969-12-31T23:59:59Z",
        "1970-01-01T00:30:00+01:00",  # before the epoch in UTC
        "1772366400000",
        "",
    ],
)
def test_parse_ts_rejects_bad_strings(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ts(text)
    assert rejected(event(ts=text)).kind == "invalid_value"


@pytest.mark.parametrize("ms", [0, 1, TS_MS, MAX_TS_MS])
def test_parse_ts_integer_ms(ms: int) -> None:
    assert parse_ts(ms) == ms
    (e,), _ = parse(event(ts=ms))
    assert e.ts == ms


@pytest.mark.parametrize("ms", [-1, MAX_TS_MS + 1, 18_446_744_073_709_551_615])
def test_parse_ts_integer_out_of_range(ms: int) -> None:
    assert rejected(event(ts=ms)).kind == "invalid_value"


@pytest.mark.parametrize("value", [True, False, 1.7723664e12, [TS], {"ts": TS}])
def test_parse_ts_wrong_type(value: Any) -> None:
    with pytest.raises(TypeError):
        parse_ts(value)
    assert rejected(event(ts=value)).kind == "wrong_type"


def test_both_ts_forms_give_the_same_event() -> None:
    assert parse(event(ts=TS)) == parse(event(ts=TS_MS))


# Whole messages


def test_too_large_is_checked_before_parsing() -> None:
    raw = orjson.dumps(event())
    assert parse(raw, max_bytes=len(raw))[0] != []
    events, (dead,) = parse(raw, max_bytes=len(raw) - 1)
    assert events == [] and dead.kind == "too_large" and dead.index is None
    assert dead.raw == raw.decode()
    # not even JSON: still too_large, not not_json
    assert parse(b"\xff" * 20, max_bytes=10)[1][0].kind == "too_large"


def test_raw_is_cut_at_64_kib() -> None:
    raw = b"x" * (MAX_RAW_CHARS * 5)
    (dead,) = parse(raw)[1]
    assert dead.kind == "not_json" and dead.raw == "x" * MAX_RAW_CHARS
    (dead,) = parse(raw, max_bytes=100)[1]
    assert dead.kind == "too_large" and len(dead.raw) == MAX_RAW_CHARS
    wide = "€" * (MAX_RAW_CHARS + 1)  # 3 bytes per character
    (dead,) = parse(event(account_id=wide))[1]
    assert dead.kind == "invalid_value" and len(dead.raw) == MAX_RAW_CHARS
    assert dead.raw.startswith('{"event_id"')


@pytest.mark.parametrize(
    "raw", [b"", b"   ", b"{", b"{'a': 1}", b"NaN", b"1e400", b"\xef\xbb\xbf{}", b"[" * 2000]
)
def test_not_json(raw: bytes) -> None:
    dead = rejected(raw)
    assert dead.kind == "not_json" and dead.index is None


def test_null_value_tombstone_is_not_json() -> None:
    events, (dead,) = parse_message(None, topic="t", partition=0, offset=1)
    assert events == [] and dead.kind == "not_json" and dead.raw == ""


def test_non_utf8_is_not_json_and_raw_shows_replacement() -> None:
    raw = orjson.dumps(event()).replace(b"e-1", b"e-\xff")
    dead = rejected(raw)
    assert dead.kind == "not_json" and "e-\ufffd" in dead.raw


def test_lone_surrogate_escape_is_not_json() -> None:
    raw = orjson.dumps(event()).replace(b"e-1", b"e-\\ud800")
    assert rejected(raw).kind == "not_json"


def test_escaped_surrogate_pair_is_valid() -> None:
    raw = orjson.dumps(event()).replace(b"e-1", b"e-\\ud83d\\ude00")
    (e,), _ = parse(raw)
    assert e.event_id == "e-\U0001f600"


@pytest.mark.parametrize("value", [1, "login", None, True, 2.5])
def test_not_object(value: Any) -> None:
    dead = rejected(value)
    assert dead.kind == "not_object" and dead.index is None
    assert dead.raw == orjson.dumps(value).decode()


# Batches


def test_batch_keeps_good_elements_and_indexes_bad_ones() -> None:
    good = [event("login", event_id=f"e{i}") for i in range(3)]
    no_device = event("login", event_id="bad")
    del no_device["device_id"]
    batch = [good[0], 7, good[1], no_device, [good[2]], event(type="nope"), good[2]]
    events, dead = parse(batch)
    assert [e.event_id for e in events] == ["e0", "e1", "e2"]
    assert [(d.index, d.kind) for d in dead] == [
        (1, "not_object"),
        (3, "missing_field"),
        (4, "not_object"),
        (5, "unknown_type"),
    ]
    assert dead[1].raw == orjson.dumps(no_device).decode()
    assert dead[0].raw == "7"
    assert all((d.topic, d.partition, d.offset) == ("usage-events", 2, 40) for d in dead)


def test_batch_of_mixed_types_and_accounts() -> None:
    batch = [event(t, account_id=f"a{i}") for i, t in enumerate(sorted(EVENT_TYPES))]
    events, dead = parse(batch)
    assert dead == []
    assert [(e.type, e.account_id) for e in events] == [(b["type"], b["account_id"]) for b in batch]


def test_empty_batch_yields_nothing() -> None:
    assert parse([]) == ([], [])


def test_batch_longer_than_1000_is_accepted() -> None:
    events, dead = parse([event(event_id=str(i)) for i in range(1500)])
    assert len(events) == 1500 and dead == []


def test_single_message_dead_letter_has_no_index_and_whole_raw() -> None:
    raw = b'{"type": "login", "note": "x"}'
    dead = rejected(raw)
    assert dead.index is None and dead.raw == raw.decode()


def test_dead_letter_record_matches_contract() -> None:
    dead = rejected(event(type="nope"))
    record = dead.to_record()
    assert set(record) == {"error", "topic", "partition", "offset", "index", "raw", "kind"}
    assert record["kind"] == "unknown_type" and record["error"] == dead.error
    assert (record["topic"], record["partition"], record["offset"]) == ("usage-events", 2, 40)
    assert orjson.loads(orjson.dumps(record)) == record


def test_error_kinds_are_the_bounded_set() -> None:
    assert ERROR_KINDS == {
        "too_large",
        "not_json",
        "not_object",
        "missing_field",
        "wrong_type",
        "invalid_value",
        "unknown_type",
        "future_ts",
        "past_ts",
    }


# Helpers


def test_topic_kind() -> None:
    assert {topic_kind(t) for t in SUBSCRIPTION_TYPES} == {"subscription"}
    assert {topic_kind(t) for t in USAGE_TYPES} == {"usage"}
    with pytest.raises(ValueError):
        topic_kind("nope")


def test_internal_batch_round_trip() -> None:
    events = [parse(event(t))[0][0] for t in sorted(EVENT_TYPES)]
    raw = encode_batch(events)
    assert orjson.loads(raw) == [e.to_dict() for e in events]
    assert decode_batch(raw) == events
    assert decode_batch(encode_batch([])) == []
    # internal batches are also valid wire input
    assert parse(raw) == (events, [])
