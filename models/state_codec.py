"""The account state on the changelog: a compact, versioned msgpack encoding.

``models.account.dump_state`` / ``load_state`` call :func:`encode` / :func:`decode`.

A record is ``b"CWAS"``, a version byte, then (version 10 and 11) one zstandard frame
(level 4, its content size in the header, compressed with the dictionary
:data:`DICTIONARY`) of a msgpack array written and read by
msgspec against the typed schema below (``_Account``), so decoding builds only
plain values and never runs code. A frame that does not state its size, or states
more than :data:`MAX_PAYLOAD` bytes, is refused before it is inflated. Every
dataclass is an array of its fields (no field names); besides that:

- the day buckets are columns (a list per field, the actions flattened);
- strings that repeat within a state (action names in the day buckets, the
  feature names of the pending churn snapshots) are small integers: an index
  into :data:`NAMES` (fixed, part of the format) or else into the state's own
  name table;
- each pending snapshot is its values in the order of a shared key list, packed
  (``models.account.pack_floats``): a kind byte per value (zero, a whole number 1-255,
  float32 exact, else float64), then the whole numbers a byte each, then the float32
  values, then the float64 ones: about 300 bytes for the ~76 features
  of a snapshot instead of 608 (version 7 and before: every value as float64
  bytes; the pending snapshots were 39% of a state's bytes). Values are read back
  as floats bit for bit (``churn_features`` gives floats, except an int 0 for
  ``price_increase_pct_90d`` without price changes, read back as 0.0; since
  ``models.labels.taken`` rounds a snapshot's values to float32 when it is taken,
  every value of a new snapshot is zero or float32). A snapshot is packed once,
  when it is taken, and kept packed in memory (``models.account.Snapshot``): it is
  written and read back as those bytes, checked but not unpacked;
- a column of floats that are whole numbers (counts, whole seconds, zeros) is
  stored as msgpack integers, one that float32 holds exactly as float32 bytes; both
  are read back bit for bit, others stay float64;
- a place's viewing days, and the household's busiest streams and time over the
  plan's streams per day, are one list each (:func:`_day_column`), not a map.

Choosing the columns this way keeps the Python work per state small: the loops
over days and values run inside C (``map``, ``array``, msgspec).

Version 11 added to version 10 each device's network group (``Device.group``, a
trailing field) and a network's group and days seen to the household's network
records (``HouseholdState.prefixes``: ``evidence._link``); a
version 10 record reads as is (groups -1, networks as (ts, place)), and its networks
are padded when next seen. Version 10 added to version 9 the dictionary, the packing's
whole numbers (kind 3), the integer columns and the place's day list; its schema reads
a version 9 record (a place's days as a map, float columns as floats or bytes, a
snapshot's packing without kind 3) as it is. The dictionary
(``models/state_v10.zdict``, 32 KB, made by ``benchmarks/train_state_dictionary.py``
from simulated states whose action names and places were scrambled, so that it holds
the format rather than the simulator's vocabulary) gives zstandard the msgpack layout,
the fixed names and the columns' shapes that a record of a few KB is too short to
teach it: median record ~2,550 -> ~2,020 bytes on a held-out population, at the same
CPU (docs/design.md, "Account state on the changelog"). It is part of the format: its
sha256 is checked when this module is imported, and a new dictionary needs a new
version.
Version 8 is version 9 without the zstandard frame (the msgpack array as is): the
frame halves a state (median 5,517 -> ~2,900 bytes, ``benchmarks/bench_state.py``)
for ~18 µs per encode and ~6 µs per decode. Version 7 is version 8 with every pending
snapshot's values as float64 bytes.
Version 5 is version 7 whose place prefixes are (first, last, IP version) only;
version 7 added their address-pool evidence (last host, the one before, when it
changed, pool flag: ``models.household.evidence._seen``) in the same wire types, so
a version 5 record reads as is and its prefixes are padded when next seen. Version 6
is version 7 with the first 30 entries of :data:`NAMES` as its fixed name table
(``NAMES_V4``; version 5 added the names of the churn features' long view), so its
own names are numbered after those; version 4 is version 6 without the pool evidence
(5 and 6 were made in parallel, 7 joins them). Version 3 is version 4
without the risk state's ``follow_ups`` (its last field): msgspec reads a
version 3 record with the version 4 schema, ``follow_ups`` empty.
Version 2 (a pickle of the object graph, written before this module) is still
read, through an unpickler that can only build the classes a version 2 state
holds, and converted. Anything else raises ``ValueError``.

>>> from models.account import new_account
>>> raw = encode(new_account("a-1"))
>>> raw[:4], raw[4], len(raw) < 150, decode(raw) == new_account("a-1")
(b'CWAS', 11, True, True)
"""

from __future__ import annotations

import hashlib
import io
import pickle
from array import array
from collections import deque
from dataclasses import fields
from importlib import resources
from itertools import accumulate, chain, filterfalse, islice
from operator import attrgetter, ge, sub
from typing import Any

import msgspec
import zstandard

from models.account import AccountState, DayBucket, Days, Snapshot, check_packed
from models.alerting import AlertTrack
from models.household import MAX_TRAVEL_FLAGS, Device, HouseholdState, Place
from models.risk import RiskState

MAGIC = b"CWAS"
# 2: pickle, 3: without follow-ups, 4: a shorter NAMES, 5: without pool evidence,
# 6: a shorter NAMES, 7: pending snapshots as float64, 8: not compressed, 9: no
# dictionary, 10: no network groups (2-10 read only); 11: this
VERSION = 11
LEVEL = 4  # zstandard's compression level (with the dictionary: 3's CPU, -3% bytes)
# version 10's dictionary (benchmarks/train_state_dictionary.py), used by 11 too: part of
# the format
DICTIONARY = "state_v10.zdict"
DICTIONARY_SHA256 = "38de3f4cc50bee3ea7dd76474799550b97cbb7dd0d9932b85681a3b854743c2a"
MAX_PAYLOAD = 16 << 20  # the largest inflated state read (the largest seen: ~30 KB)

# Names every state shares (the fixed churn features and the "other" action): never
# reorder or remove one, only append (their positions are in the stored states).
NAMES = (
    "other", "action_other_28d", "tenure_days_log", "cancelled", "reactivations",
    "price_monthly_log", "billing_yearly", "days_to_renewal", "max_streams",
    "price_increase_pct_90d", "plan_upgrades_90d", "plan_downgrades_90d",
    "payment_failed_7d", "payment_failed_28d", "payment_unresolved", "support_contacts_28d",
    "days_since_last_playback", "days_since_last_activity", "devices_28d", "profiles_28d",
    "watch_hours_7d", "sessions_7d", "active_days_7d", "activity_7d", "watch_hours_28d",
    "sessions_28d", "active_days_28d", "activity_28d", "engagement_trend", "active_days_trend",
    # added in version 5: the churn features' long view (models.features)
    "usage_hl3d", "usage_hl14d", "usage_hl56d", "usage_trend_3v56", "usage_trend_14v56",
    "watch_hours_56d", "active_days_56d", "activity_56d", "watch_trend_long",
    "active_days_trend_long", "activity_trend_long", "usual_actions_count",
    "usual_actions_dropped", "usual_actions_gone", "top_actions_trend",
    *(f"actrate_h{i}" for i in range(8)), *(f"acttrend_h{i}" for i in range(8)),
)  # fmt: skip
NAMES_V4 = NAMES[:30]  # the table of versions 3 and 4 (their own names are numbered after it)
_NAME_INDEX = {name: i for i, name in enumerate(NAMES)}


class _Days(msgspec.Struct, array_like=True):
    """The day buckets as columns (one entry per day; actions flattened)."""

    day: list[int]
    watch_s: bytes | list[float]  # see _floats
    sessions: list[int]
    usage_events: list[int]
    activity: bytes | list[float]
    action_count: list[int]  # actions of each day
    action_name: list[int]  # name indices, day after day
    action_qty: bytes | list[float]


class _Pending(msgspec.Struct, array_like=True):
    """The pending churn snapshots: a feature-name list each, and their values."""

    ts: list[int]
    keys: list[int]  # index into key_lists
    key_lists: list[list[int]]  # name indices
    # ``models.account.pack_floats`` (version 7: float64 bytes), in the key list's order
    values: list[bytes]


class _Risk(msgspec.Struct, array_like=True):
    tracks: dict[str, tuple[bool, int]]  # kind -> (active, episode)
    published: tuple[float, float] | None
    scores: tuple[float, float]
    models: tuple[str, str]
    scored_ts: int | None
    open_alerts: dict[str, int]
    recent: list[dict[str, Any]]
    decided_ts: int | None
    # added in version 4: a version 3 record lacks it, and msgspec gives the default
    follow_ups: list[tuple[str, str, int]] = []


class _Place(msgspec.Struct, array_like=True):
    pid: int
    lat: float | None
    lon: float | None
    n_geo: int
    last_ts: int
    paid: bool
    prefixes: dict[str, tuple[int, ...]]
    days: dict[int, int] | list[int]  # version 10: a list, see _day_column
    hours: bytes | list[float]  # see _floats
    hours_ts: int


class _Device(msgspec.Struct, array_like=True):
    first_ts: int
    last_ts: int
    kind: str
    last_pid: int
    pos: tuple[int, float, float] | None
    place_days: dict[int, set[int]]
    overlap: dict[int, int]
    group: int = -1  # version 11


class _Household(msgspec.Struct, array_like=True):
    first_ts: int | None
    max_ts: int
    sealed_until: int | None
    next_pid: int
    prefixes: dict[str, tuple[int, ...]]  # version 10 and before: (ts, place id) only
    profiles: dict[str, int]
    open_sessions: dict[str, tuple[int, int, str]]
    pending_stops: dict[str, tuple[int, float | None]]
    intervals: list[tuple[int, int, int, str]]
    day_max_streams: dict[int, int] | list[int]  # version 10: a list, see _day_column
    day_over_ms: dict[int, int] | list[int]  # the same
    unplaced_paid_members: int
    failed_devices: dict[str, int]
    verifications_failed: int
    verifications_verified: int
    # not stored as they are
    places: list[_Place]
    devices: dict[str, _Device]
    travel_flags: list[int]


class _Account(msgspec.Struct, array_like=True):
    account_id: str
    events_applied: int
    first_ts: int | None
    max_ts: int
    seen_ids: dict[str, int]
    plan: str | None
    price: float
    currency: str | None
    billing_period: str
    max_streams: int
    plan_ts: int
    start_ts: int | None
    status: str
    status_changes: list[tuple[int, str]]
    price_changes: list[tuple[int, float, float]]
    plan_changes: list[tuple[int, int]]
    failed_payments: list[int]
    last_payment_ok_ts: int | None
    support_contacts: list[int]
    actions: list[str]
    devices: dict[str, list[int]]
    profiles: dict[str, list[int]]
    open_sessions: dict[str, int]
    orphan_stops: dict[str, tuple[int, float | None]]
    expired_sessions: int
    last_playback_ts: int | None
    last_usage_ts: int | None
    last_obs_ts: int | None
    dropped_snapshots: int
    # not stored as they are
    names: list[str]  # the state's own names, indexed after NAMES
    days: _Days
    pending: _Pending
    risk: _Risk
    household: _Household


def _plain(wire: type[msgspec.Struct], last: str) -> tuple[str, ...]:
    """The fields of ``wire`` before ``last``: stored as they are in the dataclass."""
    names = wire.__struct_fields__
    return names[: names.index(last)]


_ACCOUNT_PLAIN = _plain(_Account, "names")
_HOUSEHOLD_PLAIN = _plain(_Household, "places")
_account_plain = attrgetter(*_ACCOUNT_PLAIN)
_household_plain = attrgetter(*_HOUSEHOLD_PLAIN)
_place_fields = attrgetter(*_Place.__struct_fields__)
_device_fields = attrgetter(*_Device.__struct_fields__)
_risk_plain = attrgetter(*_Risk.__struct_fields__[1:])
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_Account)
_HEADER = MAGIC + bytes([VERSION])


def _dictionary() -> zstandard.ZstdCompressionDict:
    raw = resources.files("models").joinpath(DICTIONARY).read_bytes()
    if hashlib.sha256(raw).hexdigest() != DICTIONARY_SHA256:
        raise RuntimeError(f"models/{DICTIONARY} is not the dictionary of state version 10")
    dictionary = zstandard.ZstdCompressionDict(raw)
    dictionary.precompute_compress(level=LEVEL)
    return dictionary


# one of each per process: the worker encodes and decodes states on its event loop only
_DICTIONARY = _dictionary()
_COMPRESSOR = zstandard.ZstdCompressor(
    level=LEVEL, dict_data=_DICTIONARY, write_content_size=True, write_dict_id=False
)
_DECOMPRESSOR = zstandard.ZstdDecompressor(dict_data=_DICTIONARY)
_DECOMPRESSOR_V9 = zstandard.ZstdDecompressor()  # version 9: the frame without a dictionary


def encode(state: AccountState) -> bytes:
    """The changelog record of ``state`` (see the module docstring)."""
    return frame(_ENCODER.encode(_to_wire(state)))


def decode(raw: bytes) -> AccountState:
    """Inverse of :func:`encode`; reads versions 2 to 10 too. ValueError on anything else.

    >>> decode(b"CWAS\\x0c")
    Traceback (most recent call last):
    ...
    ValueError: unsupported account state version 12
    """
    if len(raw) < 5 or raw[:4] != MAGIC:
        raise ValueError("not an account state")
    version = raw[4]
    if version not in (2, 3, 4, 5, 6, 7, 8, 9, 10, VERSION):
        raise ValueError(f"unsupported account state version {version}")
    try:
        if version == 2:
            return _from_v2(raw[5:])
        table = NAMES_V4 if version in (3, 4, 6) else NAMES
        return _from_wire(_DECODER.decode(_array(raw)), table, packed=version >= 8)
    except Exception as exc:  # corrupt: msgspec, index, type or pickle errors alike
        raise ValueError(f"corrupt account state (version {version}): {exc}") from exc


def payload(raw: bytes) -> bytes:
    """The msgpack array of a version 8 to 11 record, inflated: what a test or a tool
    searches or measures (the frame would hide both what it holds and how it grows)."""
    if raw[:4] != MAGIC or raw[4] not in (8, 9, 10, VERSION):
        raise ValueError("not a version 8 to 11 account state")
    return bytes(_array(raw))


def frame(array: bytes) -> bytes:
    """The record of this version holding the msgpack ``array`` (what :func:`encode`
    writes after ``_to_wire``): for tests and tools that write a record by hand."""
    return _HEADER + _COMPRESSOR.compress(array)


def _array(raw: bytes) -> bytes | memoryview:
    """The msgpack array of a record of version 3 to 11 (inflated from the frame of
    version 9, or of version 10 and 11 with the dictionary)."""
    if raw[4] in (10, VERSION):
        return _inflate(raw[5:], _DECOMPRESSOR)
    return _inflate(raw[5:], _DECOMPRESSOR_V9) if raw[4] == 9 else memoryview(raw)[5:]


def _inflate(frame: bytes, decompressor: zstandard.ZstdDecompressor) -> bytes:
    """The msgpack array in a record's frame, at most :data:`MAX_PAYLOAD` bytes.

    >>> _inflate(_COMPRESSOR.compress(b"abc"), _DECOMPRESSOR)
    b'abc'
    >>> _inflate(zstandard.ZstdCompressor(write_content_size=False).compress(b"abc"), _DECOMPRESSOR)
    Traceback (most recent call last):
    ...
    ValueError: a state of unknown or too large size (-1 bytes)
    """
    size = zstandard.frame_content_size(frame)
    if not 0 <= size <= MAX_PAYLOAD:
        raise ValueError(f"a state of unknown or too large size ({size} bytes)")
    return decompressor.decompress(frame, max_output_size=size)


# --- the wire form: version 11 (read: 3 to 10) -------------------------------------------


def _floats(values: list[float], whole: bool = False) -> bytes | list[float]:
    """``values`` as msgpack integers (1 to 5 bytes each) when ``whole`` asks for it and
    they are whole numbers (counts, whole seconds: version 10), else as float32 bytes (4
    bytes each instead of 9) when that is exact, else as they are. (Testing for whole
    numbers and converting costs ~3 µs per column of ~40: it is asked for the columns
    where it pays, the days' watch seconds and activity, -80 bytes of a median record.)

    :func:`_unfloats` and the schema (``list[float]`` takes integers) read them back
    as floats bit for bit (negative zero included).

    >>> _floats([3.0, 1e9, 0.0], True), _floats([3.0, 0.5, -0.0], True), _floats([0.1])
    ([3, 1000000000, 0], b'\\x00\\x00@@\\x00\\x00\\x00?\\x00\\x00\\x00\\x80', [0.1])
    >>> _unfloats(_floats([3.0, 0.5, -0.0])), _floats([-0.0, 1.0], True), _floats([3e9, 1.0], True)
    ([3.0, 0.5, -0.0], b'\\x00\\x00\\x00\\x80\\x00\\x00\\x80?', b'^\\xd02O\\x00\\x00\\x80?')
    """
    f32 = array("f", values)
    exact = f32.tolist()  # floats, whatever ``values`` holds
    if exact != values:
        return values
    raw = f32.tobytes()
    top = raw[3::4]  # each value's sign and 7 high bits of its exponent
    if (
        whole
        and 0x80 not in top  # no -0.0 (the only whole number with that top byte)
        and max(top.translate(_UNSIGNED), default=0) <= _BELOW_2_31  # nor 2**31 or more
        and all(map(float.is_integer, exact))
    ):
        return list(map(float.__trunc__, exact))  # type: ignore[arg-type]  # read as floats
    return raw


# (whole numbers of at least 2**31 stay float32: a float32's top byte then is
# 79 = (127 + 31) >> 1 or more, its sign aside)
_UNSIGNED = bytes(i & 0x7F for i in range(256))
_BELOW_2_31 = 78


def _day_column(days: dict[int, int]) -> list[int]:
    """A dict of day -> value as one list (version 10): the first day, each next day as
    its difference from the one before (in the dict's order: one or two bytes, not
    three), then the values.

    >>> days = {20454: 7, 20455: 0, 20453: 9}
    >>> _day_column(days), _day_dict(_day_column(days)) == days, _day_column({})
    ([20454, 1, -2, 7, 0, 9], True, [])
    """
    keys = list(days)
    column = list(map(sub, keys, chain(_ZERO, keys)))
    column += days.values()
    return column


_ZERO = (0,)


def _day_dict(column: dict[int, int] | list[int]) -> dict[int, int]:
    """Inverse of :func:`_day_column` (a version 9 record holds the dict)."""
    if isinstance(column, dict):
        return column
    n, odd = divmod(len(column), 2)
    if odd:
        raise ValueError("a day column of odd length")
    return dict(zip(accumulate(column[:n]), column[n:], strict=True))


def _unfloats(column: bytes | list[float]) -> list[float]:
    return array("f", column).tolist() if isinstance(column, bytes) else column


def _to_wire(s: AccountState) -> _Account:
    index = dict(_NAME_INDEX)  # names not in NAMES get the next numbers
    d = s.days
    names = list(chain.from_iterable(d.actions))
    _number(index, names)
    days = _Days(
        d.day,
        _floats(d.watch_s, whole=True),
        d.sessions,
        d.usage_events,
        _floats(d.activity, whole=True),
        list(map(len, d.actions)),
        list(map(index.__getitem__, names)),
        _floats(list(chain.from_iterable(map(dict.values, d.actions)))),
    )
    # a version 2 state (and a test) may hold a snapshot as a plain dict
    snapshots = [x if isinstance(x, Snapshot) else Snapshot.of(x) for _, x in s.pending]
    lists: dict[tuple[str, ...], int] = {}
    keys = [lists.setdefault(x.names, len(lists)) for x in snapshots]
    for ks in lists:
        _number(index, ks)
    key_lists = [list(map(index.__getitem__, ks)) for ks in lists]
    pending = _Pending(
        [ts for ts, _ in s.pending],
        keys,
        key_lists,
        [x.packed for x in snapshots],
    )
    return _Account(
        *_account_plain(s),
        names=list(index)[len(NAMES) :],
        days=days,
        pending=pending,
        risk=_risk_to_wire(s.risk),
        household=_household_to_wire(s.household),
    )


def _number(index: dict[str, int], names: list[str] | tuple[str, ...]) -> None:
    """Give the ``names`` that ``index`` lacks the next numbers, first seen first (the
    test runs in C: a snapshot's ~80 names are nearly all known)."""
    for name in dict.fromkeys(filterfalse(index.__contains__, names)):
        index[name] = len(index)


def _risk_to_wire(r: RiskState) -> _Risk:
    tracks = {kind: (t.active, t.episode) for kind, t in r.tracks.items()}
    return _Risk(tracks, *_risk_plain(r))


def _household_to_wire(hs: HouseholdState) -> _Household:
    places = []
    for p in hs.places.values():
        place = _Place(*_place_fields(p))
        place.hours = _floats(p.hours)
        place.days = _day_column(p.days)
        places.append(place)
    h = _Household(
        *_household_plain(hs),
        places=places,
        devices={d: _Device(*_device_fields(dev)) for d, dev in hs.devices.items()},
        travel_flags=list(hs.travel_flags),
    )
    h.day_max_streams = _day_column(hs.day_max_streams)
    h.day_over_ms = _day_column(hs.day_over_ms)
    return h


def _snapshot(keys: tuple[str, ...], raw: bytes, packed: bool) -> Snapshot:
    """A pending snapshot read back: packed (version 8 on: checked, kept packed), else
    float64 bytes (packed now)."""
    if not packed:
        return Snapshot.of(dict(zip(keys, array("d", raw).tolist(), strict=True)))
    check_packed(raw, len(keys))
    return Snapshot(keys, bytes(raw))


def _from_wire(w: _Account, table: tuple[str, ...] = NAMES, packed: bool = True) -> AccountState:
    names = table + tuple(w.names)
    d = w.days
    flat = zip(map(names.__getitem__, d.action_name), _unfloats(d.action_qty), strict=True)
    columns = (
        d.day, _unfloats(d.watch_s), d.sessions, d.usage_events, _unfloats(d.activity),
        [dict(islice(flat, n)) for n in d.action_count],
    )  # fmt: skip
    if len(set(map(len, columns))) != 1:
        raise ValueError("day columns of different lengths")
    if any(map(ge, d.day, d.day[1:])):  # in the order the days came (before the columns)
        order = sorted(range(len(d.day)), key=d.day.__getitem__)
        columns = tuple([column[i] for i in order] for column in columns)
        if len(set(d.day)) != len(d.day):
            raise ValueError("a day twice")
    days = Days(*columns)
    p = w.pending
    key_lists = [tuple([names[i] for i in ks]) for ks in p.key_lists]  # shared
    features = [_snapshot(key_lists[k], v, packed) for k, v in zip(p.keys, p.values, strict=True)]
    pending = list(zip(p.ts, features, strict=True))
    r = w.risk
    risk = RiskState(
        {kind: AlertTrack(active, episode) for kind, (active, episode) in r.tracks.items()},
        *_risk_plain(r),
    )
    return AccountState(
        **dict(zip(_ACCOUNT_PLAIN, _account_plain(w), strict=True)),
        days=days,
        pending=pending,
        risk=risk,
        household=_household_from_wire(w.household),
    )


def _household_from_wire(h: _Household) -> HouseholdState:
    for p in h.places:
        p.hours = _unfloats(p.hours)
        p.days = _day_dict(p.days)
    h.day_max_streams = _day_dict(h.day_max_streams)
    h.day_over_ms = _day_dict(h.day_over_ms)
    return HouseholdState(
        **dict(zip(_HOUSEHOLD_PLAIN, _household_plain(h), strict=True)),
        places={p.pid: Place(*_place_fields(p)) for p in h.places},
        devices={d: Device(*_device_fields(dev)) for d, dev in h.devices.items()},
        travel_flags=deque(h.travel_flags, maxlen=MAX_TRAVEL_FLAGS),
    )


# --- version 2 (read only) ----------------------------------------------------


class _V2Object:
    """An object of a version 2 pickle: the attributes it was pickled with, for
    :func:`_v2_build` to make a ``target`` of. No class of ours is unpickled (a compiled
    class may not be, and a field added since gets its default from the constructor)."""

    target: type = object

    def __init__(self) -> None:
        self.attrs: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        # a slotted dataclass pickles (None, {slot: value}); a plain object its __dict__
        own, slots = state if isinstance(state, tuple) else (state, None)
        self.attrs = {**(own or {}), **(slots or {})}


def _v2(cls: type) -> type[_V2Object]:
    return type(f"V2{cls.__name__}", (_V2Object,), {"target": cls})


# exactly the classes a version 2 state graph holds, by the names it was pickled under
_V2_CLASSES: dict[tuple[str, str], type] = {
    ("models.account", "AccountState"): _v2(AccountState),
    ("models.account", "DayBucket"): _v2(DayBucket),
    ("models.household", "HouseholdState"): _v2(HouseholdState),
    ("models.household", "Place"): _v2(Place),
    ("models.household", "Device"): _v2(Device),
    ("models.alerting", "AlertTrack"): _v2(AlertTrack),
    ("models.engine", "RiskState"): _v2(RiskState),
    ("collections", "deque"): deque,
}


class _V2Unpickler(pickle.Unpickler):
    """Builds only the classes of ``_V2_CLASSES``: a crafted pickle cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        cls = _V2_CLASSES.get((module, name))
        if cls is None:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of an account state")
        return cls


def _from_v2(payload: bytes) -> AccountState:
    """Unpickle a version 2 state and convert it (through the current schema, which
    checks every type)."""
    old = _V2Unpickler(io.BytesIO(payload)).load()
    if not isinstance(old, _V2Object) or old.target is not AccountState:
        raise ValueError("not an account state")
    risk = old.attrs.pop("alerts", {}).get("risk")  # version 2 kept the risk state there
    buckets = old.attrs.pop("days", {})  # and an object per day
    state = _v2_build(old)
    state.days = Days.of(_v2_build(buckets))
    state.risk = _v2_build(risk) if risk is not None else RiskState()
    return _from_wire(_DECODER.decode(_ENCODER.encode(_to_wire(state))))


def _v2_build(obj: Any) -> Any:
    """The objects of a version 2 graph made again with today's classes: the attributes
    that are still fields, the fields added since with their defaults.

    >>> p = _v2(Place)(); p.attrs = {"pid": 3, "lat": None, "lon": None, "gone": 1}
    >>> _v2_build(p).pid, _v2_build(p).n_geo
    (3, 0)
    >>> del p.attrs["pid"]; _v2_build(p)
    Traceback (most recent call last):
    ...
    ValueError: Place of a version 2 state: ...
    """
    if isinstance(obj, _V2Object):
        names = {f.name for f in fields(obj.target)}
        kwargs = {k: _v2_build(v) for k, v in obj.attrs.items() if k in names}
        try:
            return obj.target(**kwargs)
        except TypeError as exc:  # a field without a default is missing
            raise ValueError(f"{obj.target.__name__} of a version 2 state: {exc}") from None
    if isinstance(obj, dict):
        return {k: _v2_build(v) for k, v in obj.items()}
    if isinstance(obj, deque):
        return deque(map(_v2_build, obj), maxlen=obj.maxlen)
    if isinstance(obj, list | tuple):
        return type(obj)(map(_v2_build, obj))
    return obj
