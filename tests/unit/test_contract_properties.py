"""Property tests of the input-side wire contract: parse_message never raises,
dead letters are well formed, and every valid event round-trips."""

from __future__ import annotations

import string
from datetime import datetime, timedelta
from typing import Any

import orjson
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from models.contract import (
    AMOUNT_FIELDS,
    ERROR_KINDS,
    EVENT_TYPES,
    MAX_RAW_CHARS,
    MAX_TS_MS,
    DeadLetter,
    Event,
    decode_batch,
    encode_batch,
    parse_message,
)

FAST = settings(max_examples=60, deadline=None)
MANY = settings(max_examples=200, deadline=None)  # for cheap inputs

# Field strategies written from CONTRACT.md, independently of the parser's tables.
text = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
ident = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=128)
finite = st.floats(allow_nan=False, allow_infinity=False)
number = st.integers(-(2**63), 2**64 - 1) | finite
non_negative = st.integers(0, 2**64 - 1) | st.floats(min_value=0, allow_infinity=False)
max_streams = st.integers(1, 2**63)
upper = st.sampled_from(string.ascii_uppercase)
currency = st.text(alphabet=upper, min_size=3, max_size=3)
country = st.text(alphabet=upper, min_size=2, max_size=2)
device_type = st.sampled_from(["tv", "mobile", "tablet", "web", "console", "other"])
geo = st.fixed_dictionaries(
    {"lat": st.floats(-90, 90) | st.integers(-90, 90), "lon": st.floats(-180, 180)},
    optional={"country": text, "city": text},
)
plan = {"plan": text, "price": non_negative, "max_streams": max_streams}
located = {"ip": text, "geo": geo}

FIELDS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {  # (required, optional)
    "subscription_started": (
        plan | {"currency": currency, "billing_period": st.sampled_from(["month", "year"])},
        {"country": country, "channel": text},
    ),
    "plan_changed": (plan, {}),
    "price_changed": ({"price": non_negative}, {}),
    "payment_succeeded": ({"amount": number}, {}),
    "payment_failed": ({"amount": number}, {"reason": text}),
    "subscription_cancelled": ({}, {"reason": text}),
    "subscription_reactivated": (plan, {}),
    "support_contacted": ({}, {"topic": text}),
    "household_verification": (
        {"device_id": text, "outcome": st.sampled_from(["verified", "failed", "expired"])},
        {},
    ),
    "extra_member_added": ({}, {"member_id": text}),
    "account_erased": ({}, {}),
    "login": ({"device_id": text}, located | {"device_type": device_type}),
    "playback_started": (
        {"session_id": text, "device_id": text},
        located | {"profile_id": text, "content_id": text, "device_type": device_type},
    ),
    "playback_stopped": ({"session_id": text}, {"watched_s": non_negative}),
    "activity": ({"action": text}, located | {"quantity": number, "device_id": text}),
}
KNOWN = {"event_id", "type", "account_id", "ts"} | {
    f for req, opt in FIELDS.values() for f in (*req, *opt)
}
# JSON types each field accepts (anything else is wrong_type).
ACCEPTS = {
    "event_id": {str},
    "account_id": {str},
    "ts": {str, int},
    "price": {int, float},
    "amount": {int, float},
    "max_streams": {int},
    "watched_s": {int, float},
    "quantity": {int, float},
    "geo": {dict},
}


@st.composite
def rfc3339(draw: st.DrawFn) -> tuple[str, int]:
    """An RFC 3339 string with a random offset, and its epoch milliseconds."""
    ms = draw(st.integers(0, MAX_TS_MS))
    offset_min = draw(st.integers(-(24 * 60 - 1), 24 * 60 - 1))
    local = datetime(1970, 1, 1) + timedelta(milliseconds=ms)
    assume(offset_min <= 0 or local.year < 9999)
    local += timedelta(minutes=offset_min)
    if offset_min == 0:
        zone = draw(st.sampled_from(["Z", "z", "+00:00", "-00:00"]))
    else:
        sign = "+" if offset_min > 0 else "-"
        zone = f"{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}"
    frac = "" if ms % 1000 == 0 and draw(st.booleans()) else f".{ms % 1000:03d}"
    frac += draw(st.text(alphabet=string.digits, max_size=6)) if frac else ""
    sep = draw(st.sampled_from("Tt "))
    stamp = (
        f"{local.year:04d}-{local.month:02d}-{local.day:02d}{sep}"
        f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}{frac}{zone}"
    )
    return stamp, ms


ts_pair = rfc3339() | st.integers(0, MAX_TS_MS).map(lambda ms: (ms, ms))


@st.composite
def valid_event(draw: st.DrawFn) -> tuple[dict[str, Any], Event]:
    """A valid wire event (with unknown extras) and the Event it must parse to."""
    etype = draw(st.sampled_from(sorted(FIELDS)))
    required, optional = FIELDS[etype]
    fields = draw(st.fixed_dictionaries(required, optional=optional))
    ts, ms = draw(ts_pair)
    event_id, account_id = draw(ident), draw(ident)
    extras = draw(st.dictionaries(text.filter(lambda k: k not in KNOWN), json_scalars, max_size=2))
    obj = extras | {"event_id": event_id, "type": etype, "account_id": account_id, "ts": ts}
    # amounts are read as floats (models.contract._non_negative): 2**53 + 1 becomes 2**53
    read = {k: float(v) if k in AMOUNT_FIELDS else v for k, v in fields.items()}
    expected = Event(event_id, etype, account_id, ms, read)
    return obj | fields, expected


json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | finite | text
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


def parse(raw: bytes | None, **kwargs: Any) -> tuple[list[Event], list[DeadLetter]]:
    events, dead = parse_message(raw, topic="t", partition=1, offset=9, **kwargs)
    for d in dead:
        assert d.kind in ERROR_KINDS
        assert d.error.startswith(d.kind + ": ")
        assert len(d.raw) <= MAX_RAW_CHARS
        assert (d.topic, d.partition, d.offset) == ("t", 1, 9)
        assert set(d.to_record()) == {"error", "topic", "partition", "offset", "index", "raw"} | {
            "kind"
        }
        orjson.dumps(d.to_record())  # publishable
    return events, dead


def parse_obj(value: Any) -> tuple[list[Event], list[DeadLetter]]:
    return parse(orjson.dumps(value))


@FAST
@given(valid_event())
def test_valid_events_parse_and_round_trip(case: tuple[dict[str, Any], Event]) -> None:
    obj, expected = case
    assert parse_obj(obj) == ([expected], [])
    assert parse_obj(expected.to_dict()) == ([expected], [])
    assert decode_batch(encode_batch([expected])) == [expected]


@MANY
@given(st.binary(max_size=3000))
def test_never_raises_on_garbage_bytes(raw: bytes) -> None:
    events, dead = parse(raw)
    assert events == [] or raw.lstrip()[:1] in (b"{", b"[")
    assert len(dead) <= 1 or raw.lstrip()[:1] == b"["


@MANY
@given(json_values)
def test_never_raises_on_json_values(value: Any) -> None:
    events, dead = parse_obj(value)
    assert len(events) + len(dead) == (len(value) if isinstance(value, list) else 1)
    if isinstance(value, list):
        assert [d.index for d in dead] == sorted(d.index for d in dead if d.index is not None)
    else:
        assert all(d.index is None for d in dead)


@FAST
@given(
    st.lists(
        valid_event()
        | json_values.filter(lambda v: not isinstance(v, dict) or "event_id" not in v),
        max_size=5,
    )
)
def test_batch_keeps_valid_elements_and_indexes_the_rest(items: list[Any]) -> None:
    batch = [item[0] if isinstance(item, tuple) else item for item in items]
    events, dead = parse_obj(batch)
    assert events == [item[1] for item in items if isinstance(item, tuple)]
    assert [d.index for d in dead] == [
        i for i, item in enumerate(items) if not isinstance(item, tuple)
    ]
    for d in dead:
        assert orjson.loads(d.raw) == batch[d.index]  # type: ignore[index]


@FAST
@given(valid_event(), st.data())
def test_wrong_type_of_any_field(case: tuple[dict[str, Any], Event], data: st.DataObject) -> None:
    obj, _ = case
    field = data.draw(st.sampled_from(sorted(f for f in obj if f in KNOWN and f != "type")))
    accepts = ACCEPTS.get(field, {str})
    bad = data.draw(json_values.filter(lambda v: v is not None and type(v) not in accepts))
    (dead,) = parse_obj(obj | {field: bad})[1]
    assert dead.kind == "wrong_type" and f"'{field}'" in dead.error


@FAST
@given(valid_event(), st.data())
def test_missing_required_field(case: tuple[dict[str, Any], Event], data: st.DataObject) -> None:
    obj, expected = case
    required = ["event_id", "type", "account_id", "ts", *FIELDS[expected.type][0]]
    field = data.draw(st.sampled_from(required))
    del obj[field]
    (dead,) = parse_obj(obj)[1]
    assert dead.kind == "missing_field" and f"'{field}' is required" in dead.error


@FAST
@given(valid_event(), json_scalars.filter(lambda t: t not in EVENT_TYPES and t is not None))
def test_unknown_type(case: tuple[dict[str, Any], Event], etype: Any) -> None:
    (dead,) = parse_obj(case[0] | {"type": etype})[1]
    assert dead.kind == ("unknown_type" if isinstance(etype, str) else "wrong_type")


@FAST
@given(valid_event(), st.data())
def test_non_utf8_bytes_are_not_json(
    case: tuple[dict[str, Any], Event], data: st.DataObject
) -> None:
    raw = orjson.dumps(case[0])
    at = data.draw(st.integers(0, len(raw)))
    junk = data.draw(st.sampled_from([b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\x80"]))
    (dead,) = parse(raw[:at] + junk + raw[at:])[1]
    assert dead.kind == "not_json" and "\ufffd" in dead.raw


@FAST
@given(valid_event(), st.integers(0xD800, 0xDFFF))
def test_lone_surrogate_escapes_are_not_json(case: tuple[dict[str, Any], Event], cp: int) -> None:
    obj = case[0] | {"event_id": "x"}
    raw = orjson.dumps(obj).replace(b'"event_id":"x"', b'"event_id":"\\u%04x"' % cp)
    (dead,) = parse(raw)[1]
    assert dead.kind == "not_json"


@settings(max_examples=25, deadline=None)
@given(
    valid_event(),
    st.sampled_from([1_048_000, 1_100_000, 3_000_000]) | st.integers(0, 3_000_000),
    st.booleans(),
)
def test_huge_payloads(case: tuple[dict[str, Any], Event], size: int, batch: bool) -> None:
    obj = case[0] | {"padding": "é" * (size // 2)}
    raw = orjson.dumps([obj] if batch else obj)
    events, dead = parse(raw)
    if len(raw) > 1_048_576:
        assert events == [] and [d.kind for d in dead] == ["too_large"]
    else:
        assert events == [case[1]] and dead == []


@MANY
@given(st.binary(max_size=200), st.integers(0, 250))
def test_size_limit_is_exact(raw: bytes, max_bytes: int) -> None:
    events, dead = parse(raw, max_bytes=max_bytes)
    assert (dead[:1] != [] and dead[0].kind == "too_large") == (len(raw) > max_bytes)
