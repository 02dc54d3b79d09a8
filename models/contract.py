"""The wire contract (../shared/CONTRACT.md), input side.

``parse_message`` turns the raw value of one Kafka message into valid
``Event`` objects and ``DeadLetter`` records; it never raises. Validation is
table-driven: ``_TYPE_FIELDS`` holds one row per event type.

Where the contract is silent, the parser does this (and is tested for it):

- A known ``type`` is accepted on either input topic; ``topic_kind`` tells
  which topic the contract puts it on.
- A batch (JSON array) of any length is accepted, not only up to 1000; an
  empty array yields nothing. Each element is validated on its own.
- A message whose value is null (a Kafka tombstone), empty, not UTF-8 or
  starts with a byte order mark is ``not_json``.
- Unknown extra fields are dropped, also inside ``geo``. An optional field
  given as JSON null counts as absent; a required one given as null is
  ``missing_field``. ``Event.fields`` holds only the fields that were present.
- ``ts`` as a number must be a JSON integer (``1.7e12`` is ``wrong_type``)
  within years 1970..9999. As a string it must be RFC 3339 with an offset:
  ``T``, ``t`` or a space between date and time, ``Z``, ``z`` or ``+hh:mm``
  (``-00:00`` is UTC), any number of fraction digits (truncated to the
  millisecond); a leap second ``:60`` counts as the next second.
- Strings other than ``event_id`` and ``account_id`` have no length limit
  below the message size limit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

SUBSCRIPTION_TYPES = frozenset(
    {
        "subscription_started",
        "plan_changed",
        "price_changed",
        "payment_succeeded",
        "payment_failed",
        "subscription_cancelled",
        "subscription_reactivated",
        "support_contacted",
        "household_verification",
        "extra_member_added",
        "account_erased",  # contract v1.1: forget the account (docs/security.md, "Erasure")
    }
)
USAGE_TYPES = frozenset({"login", "playback_started", "playback_stopped", "activity"})
EVENT_TYPES = SUBSCRIPTION_TYPES | USAGE_TYPES


@dataclass(slots=True)
class Event:
    """One valid input event.

    ``ts`` is event time in epoch milliseconds (UTC); ``fields`` holds the
    type's own validated fields (required ones, and optional ones that were
    present); unknown extra fields of the input are dropped.

    Treated as immutable (a change is a new event: ``models.privacy``) but not frozen:
    compiled (mypyc), a frozen dataclass sets each field through ``object.__setattr__``,
    0.67 against 0.19 µs an event built, and the ingest and the account agent build
    three or four per input event.
    """

    event_id: str
    type: str
    account_id: str
    ts: int
    fields: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.type,
            "account_id": self.account_id,
            "ts": self.ts,
            **self.fields,
        }


MAX_MESSAGE_BYTES: Final = 1_048_576
MAX_RAW_CHARS: Final = 65_536
MAX_TS_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
ERROR_KINDS = frozenset(
    {
        "too_large",
        "not_json",
        "not_object",
        "missing_field",
        "wrong_type",
        "invalid_value",
        "unknown_type",
        "future_ts",  # ts too far ahead of the partition's clock or the wall clock
        "past_ts",  # ts before the accepted floor
    }
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Bad input, as published to the dead-letter topic.

    ``kind`` is one of ``ERROR_KINDS`` (a bounded metric label); ``error``
    starts with it. ``index`` is the element's position in a batch, None for a
    whole message.

    >>> DeadLetter("not_json", "not_json: empty", "usage-events", 3, 42, None, "").to_record()
    {'error': 'not_json: empty', 'topic': 'usage-events', 'partition': 3, 'offset': 42, \
'index': None, 'raw': '', 'kind': 'not_json'}
    """

    kind: str
    error: str
    topic: str
    partition: int
    offset: int
    index: int | None
    raw: str

    def to_record(self) -> dict[str, Any]:
        return {
            "error": self.error,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "index": self.index,
            "raw": self.raw,
            "kind": self.kind,
        }


def topic_kind(event_type: str) -> str:
    """The contract's topic of a known event type; ValueError for others.

    >>> topic_kind("payment_failed"), topic_kind("login")
    ('subscription', 'usage')
    """
    if event_type in SUBSCRIPTION_TYPES:
        return "subscription"
    if event_type in USAGE_TYPES:
        return "usage"
    raise ValueError(f"unknown event type {event_type!r}")


# RFC 3339 date-time with an offset; times and offsets are range-checked here,
# the calendar date by datetime.fromisoformat (which alone accepts far more).
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)"
    r"(?:\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_SECOND: Final = timedelta(seconds=1)


def parse_ts(value: object) -> int:
    """Event time as epoch milliseconds, from RFC 3339 (with offset) or integer ms.

    Raises TypeError for a value of the wrong type, ValueError for a bad one.

    >>> parse_ts("2026-03-01T12:00:00Z")
    1772366400000
    >>> parse_ts("2026-03-01T13:00:00.123999+01:00")
    1772366400123
    >>> parse_ts(1772366400000)
    1772366400000
    """
    if type(value) is int:
        ms = value
    elif type(value) is str:
        if _RFC3339.fullmatch(value) is None:
            raise ValueError("must be RFC 3339 with an offset, e.g. 2026-03-01T12:00:00Z")
        ms = (_rfc3339_datetime(value.upper()) - _EPOCH) // _MS
    else:
        raise TypeError("must be an RFC 3339 string or integer epoch milliseconds")
    if not 0 <= ms <= MAX_TS_MS:
        raise ValueError("must lie in the years 1970..9999")
    return ms


def _rfc3339_datetime(text: str) -> datetime:
    try:
        if text[17:19] == "60":  # leap second: the next second, as POSIX time has it
            return datetime.fromisoformat(text[:17] + "59" + text[19:]) + _SECOND
        return datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise ValueError("is not a valid calendar date") from None


# A field kind is (accepted JSON types, their name, rule or None). A rule gets a
# value of an accepted type and returns the value to store, or raises
# ValueError (invalid_value; TypeError, wrong_type, for parts of ``geo``) with
# the end of a sentence "'<field>' ...". Types are compared exactly, so a bool
# is never a number. orjson rejects NaN and infinities, so numbers are finite.


def _ident(s: str) -> str:
    if not 1 <= len(s) <= 128:
        raise ValueError("must be 1..128 characters")
    return s


def _non_negative(x: float) -> float:
    """An amount, as a float (an integer on the wire too: compiled or not, the same type)."""
    if x < 0:
        raise ValueError("must be >= 0")
    return float(x)


def _positive(n: int) -> int:
    if n < 1:
        raise ValueError("must be >= 1")
    return n


def _letters(n: int, standard: str) -> Callable[[str], str]:
    def rule(s: str) -> str:
        if not (len(s) == n and s.isascii() and s.isalpha() and s.isupper()):
            raise ValueError(f"must be {n} uppercase letters ({standard})")
        return s

    return rule


def _one_of(*allowed: str) -> Callable[[str], str]:
    choices = frozenset(allowed)

    def rule(s: str) -> str:
        if s not in choices:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return s

    return rule


def _coordinate(v: Any, limit: int, name: str) -> float:
    if type(v) is not int and type(v) is not float:
        raise TypeError(f"must have a numeric '{name}'")
    if not -limit <= v <= limit:
        raise ValueError(f"must have '{name}' in [-{limit}, {limit}]")
    return v


def _geo(v: dict[str, Any]) -> dict[str, Any]:
    geo: dict[str, Any] = {
        "lat": _coordinate(v.get("lat"), 90, "lat"),
        "lon": _coordinate(v.get("lon"), 180, "lon"),
    }
    for key in ("country", "city"):
        part = v.get(key)
        if part is not None:
            if type(part) is not str:
                raise TypeError(f"must have a string '{key}'")
            geo[key] = part
    return geo


_Kind = tuple[tuple[type, ...], str, Callable[[Any], Any] | None]
_Field = tuple[str, bool, tuple[type, ...], str, Callable[[Any], Any] | None]

_STRING: _Kind = ((str,), "a string", None)
_ID: _Kind = ((str,), "a string", _ident)
_TS: _Kind = ((str, int), "an RFC 3339 string or integer epoch milliseconds", parse_ts)
_NUMBER: _Kind = ((int, float), "a number", None)
_AMOUNT: _Kind = ((int, float), "a number", _non_negative)
_COUNT: _Kind = ((int,), "an integer", _positive)
_GEO: _Kind = ((dict,), "an object with numeric 'lat' and 'lon'", _geo)
_DEVICE_TYPE: _Kind = (
    (str,),
    "a string",
    _one_of("tv", "mobile", "tablet", "web", "console", "other"),
)


def _required(name: str, kind: _Kind) -> _Field:
    return (name, True, *kind)


def _optional(name: str, kind: _Kind) -> _Field:
    return (name, False, *kind)


_COMMON = (_required("event_id", _ID), _required("account_id", _ID), _required("ts", _TS))
_PLAN = (_required("plan", _STRING), _required("price", _AMOUNT), _required("max_streams", _COUNT))
_PLACE = (_optional("ip", _STRING), _optional("geo", _GEO))
_TYPE_FIELDS: dict[str, tuple[_Field, ...]] = {
    "subscription_started": (
        *_PLAN,
        _required("currency", ((str,), "a string", _letters(3, "ISO 4217"))),
        _required("billing_period", ((str,), "a string", _one_of("month", "year"))),
        _optional("country", ((str,), "a string", _letters(2, "ISO 3166-1 alpha-2"))),
        _optional("channel", _STRING),
    ),
    "plan_changed": _PLAN,
    "price_changed": (_required("price", _AMOUNT),),
    "payment_succeeded": (_required("amount", _NUMBER),),
    "payment_failed": (_required("amount", _NUMBER), _optional("reason", _STRING)),
    "subscription_cancelled": (_optional("reason", _STRING),),
    "subscription_reactivated": _PLAN,
    "support_contacted": (_optional("topic", _STRING),),
    "household_verification": (
        _required("device_id", _STRING),
        _required("outcome", ((str,), "a string", _one_of("verified", "failed", "expired"))),
    ),
    "extra_member_added": (_optional("member_id", _STRING),),
    "account_erased": (),
    "login": (_required("device_id", _STRING), *_PLACE, _optional("device_type", _DEVICE_TYPE)),
    "playback_started": (
        _required("session_id", _STRING),
        _required("device_id", _STRING),
        _optional("profile_id", _STRING),
        _optional("content_id", _STRING),
        *_PLACE,
        _optional("device_type", _DEVICE_TYPE),
    ),
    "playback_stopped": (_required("session_id", _STRING), _optional("watched_s", _AMOUNT)),
    "activity": (
        _required("action", _STRING),
        _optional("quantity", _NUMBER),
        _optional("device_id", _STRING),
        *_PLACE,
    ),
}
_SPECS = {etype: _COMMON + fields for etype, fields in _TYPE_FIELDS.items()}
# the amounts: read as floats whether the wire sends 9 or 9.0 (``_non_negative``)
AMOUNT_FIELDS = frozenset(f[0] for fs in _TYPE_FIELDS.values() for f in fs if f[4] is _non_negative)
assert _SPECS.keys() == EVENT_TYPES


class _Reject(Exception):
    def __init__(self, kind: str, error: str) -> None:
        super().__init__(error)
        self.kind = kind
        self.error = f"{kind}: {error}"


_JSON_TYPE_NAMES: Final = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    dict: "object",
    list: "array",
    type(None): "null",
}


def _json_type(v: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(v), type(v).__name__)


def _shown(v: Any) -> str:
    if type(v) is str:
        return repr(v) if len(v) <= 40 else repr(v[:40]) + "..."
    text = repr(v)
    return text if len(text) <= 60 else text[:60] + "..."


def _validate(obj: dict[str, Any]) -> Event:
    etype = obj.get("type")
    if etype is None:
        raise _Reject("missing_field", "'type' is required")
    if type(etype) is not str:
        raise _Reject("wrong_type", f"'type' must be a string, got {_json_type(etype)}")
    spec = _SPECS.get(etype)
    if spec is None:
        raise _Reject("unknown_type", f"'type' {_shown(etype)} is not a known event type")
    values: dict[str, Any] = {}
    for name, required, types, what, rule in spec:
        value = obj.get(name)
        if value is None:
            if required:
                raise _Reject("missing_field", f"'{name}' is required for type '{etype}'")
            continue
        if type(value) not in types:
            got = _json_type(value)
            raise _Reject("wrong_type", f"'{name}' must be {what} for type '{etype}', got {got}")
        if rule is not None:
            try:
                value = rule(value)
            except TypeError as e:
                raise _Reject("wrong_type", f"'{name}' {e} for type '{etype}'") from None
            except ValueError as e:
                msg = f"'{name}' {e} for type '{etype}', got {_shown(value)}"
                raise _Reject("invalid_value", msg) from None
        values[name] = value
    return Event(values.pop("event_id"), etype, values.pop("account_id"), values.pop("ts"), values)


def _text(raw: bytes) -> str:
    # A character takes at most 4 bytes, so this slice holds the first MAX_RAW_CHARS.
    return raw[: 4 * MAX_RAW_CHARS].decode("utf-8", errors="replace")[:MAX_RAW_CHARS]


def _element_text(element: Any) -> str:
    try:
        return orjson.dumps(element).decode()[:MAX_RAW_CHARS]
    except TypeError:  # cannot happen for values orjson parsed; keep the no-raise promise
        return _shown(element)


def parse_message(
    raw: bytes | None,
    *,
    topic: str,
    partition: int,
    offset: int,
    max_bytes: int = MAX_MESSAGE_BYTES,
    check_ts: Callable[[int], tuple[str, str] | None] | None = None,
) -> tuple[list[Event], list[DeadLetter]]:
    """Split one raw Kafka message value into valid events and dead letters; never raises.

    ``check_ts`` (``models.timepolicy.TimePolicy.checker``) returns ``(kind, message)``
    for an event time outside the accepted range; that event is then a dead letter too.

    >>> line = b'{"event_id": "e1", "type": "login", "account_id": "a1",'
    >>> line += b' "ts": "2026-03-01T12:00:00Z", "device_id": "d1", "extra": 1}'
    >>> events, dead = parse_message(line, topic="usage-events", partition=0, offset=7)
    >>> events, dead
    ([Event(event_id='e1', type='login', account_id='a1', ts=1772366400000, \
fields={'device_id': 'd1'})], [])
    >>> _, dead = parse_message(b'[' + line + b', {"type": "login"}]',
    ...                         topic="usage-events", partition=0, offset=8)
    >>> dead[0].index, dead[0].error
    (1, "missing_field: 'event_id' is required for type 'login'")
    """
    if raw is None:
        raw = b""
    try:
        if len(raw) > max_bytes:
            raise _Reject("too_large", f"message has {len(raw)} bytes, over the limit {max_bytes}")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise _Reject("not_json", str(e)) from None
        batch = type(doc) is list
        if not batch and type(doc) is not dict:
            got = _json_type(doc)
            raise _Reject("not_object", f"message must be a JSON object or array, got {got}")
    except _Reject as r:
        return [], [DeadLetter(r.kind, r.error, topic, partition, offset, None, _text(raw))]
    events: list[Event] = []
    dead: list[DeadLetter] = []
    for index, element in enumerate(doc if batch else (doc,)):
        try:
            if type(element) is not dict:
                got = _json_type(element)
                raise _Reject("not_object", f"batch element must be a JSON object, got {got}")
            event = _validate(element)
            if check_ts is not None:
                why = check_ts(event.ts)
                if why is not None:
                    raise _Reject(*why)
            events.append(event)
        except _Reject as r:
            where = index if batch else None
            text = _element_text(element) if batch else _text(raw)
            dead.append(DeadLetter(r.kind, r.error, topic, partition, offset, where, text))
    return events, dead


def encode_batch(events: Sequence[Event]) -> bytes:
    """Events as one JSON array, for our internal topics.

    >>> encode_batch([Event("e1", "price_changed", "a1", 5, {"price": 9.5})])
    b'[{"event_id":"e1","type":"price_changed","account_id":"a1","ts":5,"price":9.5}]'
    """
    return orjson.dumps([e.to_dict() for e in events])


def decode_batch(raw: bytes) -> list[Event]:
    """Inverse of ``encode_batch`` for trusted input: no validation.

    >>> e = Event("e1", "price_changed", "a1", 5, {"price": 9.5})
    >>> decode_batch(encode_batch([e])) == [e]
    True
    """
    out = []
    for d in orjson.loads(raw):
        out.append(Event(d.pop("event_id"), d.pop("type"), d.pop("account_id"), d.pop("ts"), d))
    return out


def read_batch(raw: bytes | None) -> tuple[list[Event], list[str]]:
    """``decode_batch`` for what an internal topic holds, never raising: the events
    of the right shape, and a reason for each element (or the whole message) that
    is not one (a bug or a foreign writer; the caller counts and skips them).

    Only the common fields are checked here: a valid event's own fields were
    validated at ingest, and the engine reports an event it fails on.

    >>> e = Event("e1", "price_changed", "a1", 5, {"price": 9.5})
    >>> read_batch(encode_batch([e])) == ([e], [])
    True
    >>> read_batch(b"")[1], read_batch(b'{"x": 1}')[1]
    (['not JSON'], ['not a JSON array'])
    >>> read_batch(b'[1, {"event_id": "e", "type": "nope", "account_id": "a", "ts": 1}]')[1]
    ['element 0: not an object', "element 1: unknown type 'nope'"]
    """
    try:
        doc = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return [], ["not JSON"]
    if type(doc) is not list:
        return [], ["not a JSON array"]
    events: list[Event] = []
    bad: list[str] = []
    for i, d in enumerate(doc):
        why = _internal_shape(d)
        if why is None:
            events.append(
                Event(d.pop("event_id"), d.pop("type"), d.pop("account_id"), d.pop("ts"), d)
            )
        else:
            bad.append(f"element {i}: {why}")
    return events, bad


def _internal_shape(d: Any) -> str | None:
    if type(d) is not dict:
        return "not an object"
    for name in ("event_id", "account_id"):
        if type(d.get(name)) is not str or not d[name]:
            return f"{name!r} is not a non-empty string"
    if d.get("type") not in EVENT_TYPES:
        return f"unknown type {_shown(d.get('type'))}"
    if type(d.get("ts")) is not int or not 0 <= d["ts"] <= MAX_TS_MS:
        return "'ts' is not epoch milliseconds"
    return None


def locate(raw: bytes | None, event_id: str) -> tuple[int | None, str]:
    """Where the event ``event_id`` stands in a message: ``(index, raw text)`` for a dead
    letter found after parsing (the index is None for a single-event message).

    >>> locate(b'[{"event_id": "a"}, {"event_id": "b", "x": 1}]', "b")
    (1, '{"event_id":"b","x":1}')
    >>> locate(b'{"event_id": "a"}', "a")
    (None, '{"event_id": "a"}')
    """
    doc = orjson.loads(raw or b"null")
    if type(doc) is list:
        for i, element in enumerate(doc):
            if type(element) is dict and element.get("event_id") == event_id:
                return i, _element_text(element)
    return None, _text(raw or b"")
