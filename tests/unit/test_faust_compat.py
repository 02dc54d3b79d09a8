"""streams.faust_compat: every patch and accessor still fits the Faust it was written for.

Two kinds of test. Fingerprints: the source of each library function a patch replaces
or relies on is hashed; a new faust-streaming, mode or aiokafka that changes one fails
here, naming it, so the patch is re-read (and dropped if upstream fixed the bug).
Behaviour: each patch and accessor is exercised on a real (unstarted) Faust consumer
and table. ``tests/integration/test_faust_commit_cap.py`` runs the commit fix on a broker.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import inspect
import re
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.fetcher import FetchResult, PartitionRecords
from aiokafka.consumer.subscription_state import Assignment, TopicPartitionState
from faust.app.base import App
from faust.streams import Stream
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, ConsumerRebalanceListener
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer_
from faust.types import TP, Message
from faust.types.tuples import ConsumerMessage
from mode.utils.collections import ManagedUserDict
from mode.worker import Worker as ModeWorker

from streams import faust_compat
from streams.app import create_app
from streams.settings import Settings

faust_compat.apply()
faust_compat.deliver_without_tasks()  # applied by create_app unless its setting is false

ROOT = Path(__file__).resolve().parents[2]

# sha256[:16] of inspect.getsource on the PINNED versions; what each patch relies on
FINGERPRINTS = {
    # 2. never_commit_past_in_flight: wraps it; relies on _acked, _committed_offset
    "Consumer._new_offset": (Consumer._new_offset.__wrapped__, "1d2c7ea89a7ad4f1"),
    # ... called once per partition by the commit's filter (which gathers for it)
    # (and by patch 5, which also wraps it: unwrapped to Faust's own)
    "Consumer._filter_committable_offsets": (
        inspect.unwrap(Consumer._filter_committable_offsets),
        "dc5e9baf5d994485",
    ),
    # ... and on acks landing in _acked (ack) and taken messages in _unacked_messages
    # (and by patch 7, which wraps ack: unwrapped to Faust's own)
    "Consumer.ack": (Consumer.ack.__wrapped__, "5fcf41cf45153475"),
    "Consumer.track_message": (Consumer.track_message, "217d7f1399a4cd8e"),
    "Stream._c_aiter": (Stream._c_aiter, "fa44582a5882e9df"),
    # give_back: wait_empty waits on _unacked_messages alone; the revocation sends its
    # signal after it (revoking); on_rebalance_start sets rebalancing and its count
    "Consumer.wait_empty": (Consumer.wait_empty, "e4662fe24f094819"),
    "App._on_partitions_revoked": (App._on_partitions_revoked, "d5c895bbe57dc73a"),
    "App.on_rebalance_start": (App.on_rebalance_start, "5c1e23de30674082"),
    # 3. deliver_without_tasks: the one wait_first call with a coroutine first; rewind:
    # it drops a message below the read offset, which seek (public) resets
    "Consumer._drain_messages": (Consumer._drain_messages, "44a2500309e83c63"),
    "Consumer.seek": (Consumer.seek, "b86a9fe05f956b30"),
    "Service.wait_first": (Consumer.wait_first.__wrapped__, "feade6a31f8a6789"),
    # 1. rewind_uncommitted (and perform_seek, which stores what it returns)
    "AIOKafkaConsumerThread.seek_to_committed": (
        AIOKafkaConsumerThread.seek_to_committed.__wrapped__,
        "775ab0adc4b052ab",
    ),
    "Consumer.perform_seek": (Consumer.perform_seek.__wrapped__, "0e8c130ff4b0afd8"),
    # store_locally: a table write is on_key_set (the changelog send) + data[key] = value
    "ManagedUserDict.__setitem__": (ManagedUserDict.__setitem__, "f3bdf602abc08dd1"),
    # graceful_worker: the signal handlers it overrides
    "Worker._install_signal_handlers_unix": (
        ModeWorker._install_signal_handlers_unix,
        "6a1810b3485970e8",
    ),
    "Worker._on_sigterm": (ModeWorker._on_sigterm, "6b99528ef557db1d"),
    "Worker._on_sigint": (ModeWorker._on_sigint, "25334ac514b211b2"),
    # recovery_pending / count_as_read / restart_recovery (the recovery watchdog): when a
    # recovery starts and what it clears, where it records each record's arrival and read
    # offset, how it ends, and what its start signal runs again
    "Recovery._set_recovery_started": (Recovery._set_recovery_started, "bcfebf81ae13fc75"),
    "Recovery._slurp_changelogs": (Recovery._slurp_changelogs.fun, "7825c7e50f766d5a"),
    "Recovery.active_remaining": (Recovery.active_remaining, "0dcc38568ad5018b"),
    "Recovery._restart_recovery": (Recovery._restart_recovery.fun, "6bd8a8558a2dffe4"),
    # 4. read_committed: Faust builds the consumer read_uncommitted; aiokafka's start hands
    # the isolation level __init__ kept to the fetcher it makes
    "AIOKafkaConsumerThread._create_worker_consumer": (
        AIOKafkaConsumerThread._create_worker_consumer.__wrapped__,
        "c2701bfc3e6f6cad",
    ),
    "AIOKafkaConsumer.start": (AIOKafkaConsumer.start, "2f1ba70443327538"),
    # 5. commit_past_skipped: getall hands out records and moves the position in one
    # piece (_update_position); the fetcher moves next_fetch_offset past control batches
    # and aborted records without a record; a commit asks every partition in _acked
    "FetchResult.getall": (FetchResult.getall.__wrapped__, "3e717e30de5068d5"),
    "FetchResult._update_position": (FetchResult._update_position, "83fb1473bf10027b"),
    "PartitionRecords._unpack_records": (PartitionRecords._unpack_records, "b803e6d46480732c"),
    "Consumer._filter_tps_with_pending_acks": (
        Consumer._filter_tps_with_pending_acks,
        "f6f9239774234e7e",
    ),
    # 6. seek_while_nothing_is_delivered: stop_flow sets suspend_flow (the drain's
    # delivery in hand returns) and getmany hands over nothing more with the flow stopped;
    # the drain calls _wait_next_records once per fetch; both recovery callers of
    # perform_seek resume the flow right after it (getmany's seeks with it stopped)
    "Consumer.stop_flow": (Consumer.stop_flow, "cf7e875a2b0d40e8"),
    "Consumer.getmany": (Consumer.getmany, "4b168d84882a70d6"),
    "Consumer._wait_next_records": (Consumer._wait_next_records.__wrapped__, "6218e1969a636b3f"),
    # 7. forget_acks_of_revoked: the revocation drops the partition's books; a message
    # carries the generation it was fetched in, set at each assignment
    "Consumer.on_partitions_revoked": (
        Consumer.on_partitions_revoked.__wrapped__,
        "d04b7ae72c6fc206",
    ),
    "aiokafka Consumer._to_message": (AIOKafkaConsumer_._to_message, "7c24f6511b2fcef7"),
    "ConsumerRebalanceListener.on_partitions_assigned": (
        ConsumerRebalanceListener.on_partitions_assigned,
        "1c1f8406ad3698a6",
    ),
    "Recovery.on_recovery_completed": (Recovery.on_recovery_completed, "6ef567acf072e46d"),
    "Recovery._resume_streams": (Recovery._resume_streams, "d986a6710c1aca98"),
    # 8. check_positioned_only: the livelock check reads each assigned partition's
    # position, which aiokafka asserts is set
    "AIOKafkaConsumerThread.verify_event_path": (
        AIOKafkaConsumerThread.verify_event_path.__wrapped__,
        "b983e7735f647cb3",
    ),
    "Consumer.verify_all_partitions_active": (
        Consumer.verify_all_partitions_active,
        "4e0e46f5c297305d",
    ),
    "TopicPartitionState.position": (TopicPartitionState.position.fget, "816b6b289bd14f5c"),
}


@pytest.mark.parametrize("name", sorted(FINGERPRINTS))
def test_patched_library_code_is_unchanged(name: str) -> None:
    func, expected = FINGERPRINTS[name]
    got = hashlib.sha256(inspect.getsource(func).encode()).hexdigest()[:16]
    assert got == expected, (
        f"{name} changed upstream: re-read streams/faust_compat.py against it, "
        "then update this fingerprint and PINNED"
    )


def test_installed_versions_are_the_pinned_ones() -> None:
    installed = {name: importlib.metadata.version(name) for name in faust_compat.PINNED}
    assert installed == faust_compat.PINNED


def test_pyproject_pins_the_same_versions() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {re.sub(r"\[.*\]", "", dep) for dep in deps}  # extras aside: aiokafka[zstd,...]
    for name, version in faust_compat.PINNED.items():
        assert f"{name}=={version}" in pins


def test_patches_apply_once() -> None:
    def patched_now() -> tuple[Any, ...]:
        return (Consumer._new_offset, Consumer._filter_committable_offsets, Consumer.wait_first,
                Consumer.ack, Consumer.on_partitions_revoked,
                AIOKafkaConsumerThread.seek_to_committed,
                AIOKafkaConsumerThread._create_worker_consumer, FetchResult.getall,
                AIOKafkaConsumerThread.verify_event_path)  # fmt: skip

    patched = patched_now()
    faust_compat.apply()
    faust_compat.deliver_without_tasks()
    after = patched_now()
    assert after == patched


@pytest.mark.parametrize("setting", ["false", "true"])
def test_the_worker_delivers_without_tasks_as_its_setting_says(setting: str) -> None:
    """Patch 3 is applied by ``create_app`` only with CHURNWATCH_DELIVER_WITHOUT_TASKS."""
    import subprocess
    import sys

    code = (
        "from streams.app import create_app; from streams.settings import Settings\n"
        f"create_app(Settings(kafka_bootstrap_servers='127.0.0.1:9', deliver_without_tasks={setting.title()}))\n"
        "from faust.transport.consumer import Consumer\n"
        f"assert hasattr(Consumer.wait_first, '__wrapped__') is {setting.title()}\n"
        "assert hasattr(Consumer._new_offset, '__wrapped__')"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.fixture(scope="module")
def app() -> Any:
    return create_app(Settings(kafka_bootstrap_servers="127.0.0.1:9"))  # never started


@pytest.fixture()
def consumer(app: Any) -> Any:
    c = app.consumer
    yield c
    for attr in ("_acked", "_acked_index", "_committed_offset", "_gap"):
        getattr(c, attr).clear()
    c._unacked_messages.clear()
    faust_compat.given_back(app).clear()
    asyncio.run(faust_compat.seek_back(c))  # (takes what a test asked for and left)


def _take(consumer: Any, tp: TP, offsets: range) -> list[Message]:
    """Messages a stream took (tracked as in flight), as ``Stream._c_aiter`` does."""
    msgs = [Message(tp.topic, tp.partition, o, 0.0, 0, {}, None, b"v", None) for o in offsets]
    for m in msgs:
        consumer._unacked_messages.add(m)
    return msgs


def _ack(consumer: Any, m: Message) -> None:
    """What ``Consumer.ack`` records for a topic with acks enabled."""
    m.acked = True
    consumer._unacked_messages.discard(m)
    consumer._acked_index[m.tp].add(m.offset)
    consumer._acked[m.tp].append(m.offset)


def test_upstream_commits_past_a_message_in_flight(consumer: Any) -> None:
    """faust-streaming #606: when this fails, upstream fixed it and patch 2 can go."""
    tp = TP("t", 0)
    consumer._committed_offset[tp] = 10
    msgs = _take(consumer, tp, range(10, 21))
    for m in msgs[1:]:  # 10 is still being processed
        _ack(consumer, m)
    assert Consumer._new_offset.__wrapped__(consumer, tp) == 21


@pytest.mark.parametrize("committed", [None, 10])
def test_a_commit_stops_at_the_lowest_message_in_flight(consumer: Any, committed: Any) -> None:
    tp = TP("t", 0)
    consumer._committed_offset[tp] = committed
    start = committed or 0
    msgs = _take(consumer, tp, range(start, start + 11))
    for m in msgs[:3] + msgs[4:]:  # the 4th is held (the ingest merge acks out of order)
        _ack(consumer, m)
    assert consumer._new_offset(tp) == start + 3  # up to the held message, not past it
    consumer._committed_offset[tp] = start + 3
    assert consumer._new_offset(tp) is None  # nothing more while it is held
    _ack(consumer, msgs[3])
    assert consumer._new_offset(tp) == start + 11  # then everything acknowledged


def test_a_commit_gathers_the_messages_in_flight_once_and_caps_each_partition(
    consumer: Any,
) -> None:
    """A commit asks every partition: the messages in flight are gathered once for all of
    them (a WeakSet pass per partition took ~60 ms a commit), with the same caps."""
    tps = [TP("t", p) for p in range(4)]
    held, taken = {}, []  # taken: the WeakSet of messages in flight needs them referenced
    for p, tp in enumerate(tps):
        consumer._committed_offset[tp] = 0
        taken += _take(consumer, tp, range(0, 10))
        held[tp] = p + 2 if p < 3 else None  # partition 3: nothing held
        for m in taken[-10:]:
            if m.offset != held[tp]:
                _ack(consumer, m)
    capped = {tps[0]: 2, tps[1]: 3, tps[2]: 4, tps[3]: 10}  # as _new_offset gives each
    gathered = []
    original = faust_compat.in_flight

    def counting(c: Any) -> Any:
        gathered.append(c)
        return original(c)

    faust_compat.in_flight = counting
    try:
        assert consumer._filter_committable_offsets(tps) == capped
    finally:
        faust_compat.in_flight = original
    assert gathered == [consumer]  # once for the four partitions
    assert "_churnwatch_in_flight" not in consumer.__dict__  # nothing kept past the commit


def test_offsets_that_never_reach_a_stream_are_still_committed(consumer: Any) -> None:
    """A hole with nothing in flight (compaction, transaction markers): Faust's own rule."""
    tp = TP("t", 0)
    consumer._committed_offset[tp] = 10
    for m in _take(consumer, tp, range(12, 15)):
        _ack(consumer, m)
    assert consumer._new_offset(tp) == Consumer._new_offset.__wrapped__(consumer, tp) is None
    consumer._committed_offset[tp] = 11
    for m in _take(consumer, tp, range(15, 17)):
        _ack(consumer, m)
    assert consumer._new_offset(tp) == 17


@pytest.mark.parametrize("committed", [None, 10])
def test_a_message_given_back_at_a_rebalance_holds_commits_until_read_again(
    consumer: Any, committed: Any
) -> None:
    """Issue #13: held at a rebalance, given back unacknowledged: the revocation stops
    waiting for it (wait_empty), and no commit passes it until it is read again."""
    tp, app = TP("t", 0), consumer.app
    consumer._committed_offset[tp] = committed
    start = committed or 0
    msgs = _take(consumer, tp, range(start, start + 6))
    faust_compat.give_back(app, msgs[2:4])  # the merge held these two
    assert not any(m in consumer._unacked_messages for m in msgs[2:4])
    for m in msgs[:2] + msgs[4:]:  # acknowledged around them
        _ack(consumer, m)
    assert consumer._new_offset(tp) == start + 2  # up to the first given back
    consumer._committed_offset[tp] = start + 2
    assert consumer._new_offset(tp) is None
    again = _take(consumer, tp, range(start + 2, start + 4))  # after the rebalance
    assert [faust_compat.read_again(app, m) for m in again] == [True, True]
    assert faust_compat.given_back(app) == {}
    assert consumer._new_offset(tp) is None  # in flight now, as any message taken
    for m in again:
        _ack(consumer, m)
    assert consumer._new_offset(tp) == start + 6


def test_a_message_past_one_given_back_is_given_back_too_until_that_one_is_read_again(
    consumer: Any,
) -> None:
    """Issue #13: given back at a stop, offset 7 of a partition; 8 and 9, read after it,
    would put their events ahead of 7's (one event lost in 2 of 20 graceful stops under
    a CPU burner). The agents give them back as well: 7's next reader reads them after it."""
    tp, app = TP("t", 0), consumer.app
    consumer._committed_offset[tp] = 5
    five, six, seven, eight, nine = _take(consumer, tp, range(5, 10))
    faust_compat.give_back(app, [seven])
    assert faust_compat.read_again(app, six)  # before it: on with it
    assert not faust_compat.read_again(app, eight)
    assert not faust_compat.read_again(app, nine)
    faust_compat.give_back(app, [eight, nine])
    assert faust_compat.given_back(app) == {tp: 7}  # the commit cap stays at 7
    _ack(consumer, five)
    _ack(consumer, six)
    assert consumer._new_offset(tp) == 7
    assert faust_compat.read_again(app, seven)  # read again (after a seek, or elsewhere)
    assert faust_compat.read_again(app, eight)
    assert faust_compat.given_back(app) == {}


@pytest.fixture()
def seeks(consumer: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[TP, int]]:
    """The seeks the consumer is asked for (the unstarted consumer cannot make them)."""
    made: list[tuple[TP, int]] = []

    async def seek(partition: TP, offset: int) -> None:
        made.append((partition, offset))

    monkeypatch.setattr(consumer, "seek", seek)
    return made


def test_a_message_past_one_given_back_rewinds_its_partition_to_the_commit(
    consumer: Any, seeks: list[tuple[TP, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message fetched before the rebalance's seek, handed over after it, moved Faust's
    read offset past the one given back, so that Faust dropped it when it came again: the
    partition stalled (test_two_workers, once). The agent then asks for a seek back to the
    commit, which resets Faust's read offset (``Consumer.seek``, fingerprinted above);
    the drain makes it before its next fetch (patch 6), once however often it was asked."""
    tp, other, app = TP("t", 0), TP("t", 1), consumer.app
    consumer._committed_offset[tp] = 5
    seven, eight = _take(consumer, tp, range(7, 9))
    faust_compat.give_back(app, [seven])
    assert not faust_compat.read_again(app, eight)
    faust_compat.give_back(app, [eight])
    faust_compat.rewind(app, [tp, tp, other])
    assert seeks == []  # not while the drain may be handing over a batch
    asyncio.run(faust_compat.seek_back(consumer))
    assert seeks == [(tp, 5)]  # once, and only where something was given back
    asyncio.run(faust_compat.seek_back(consumer))
    assert seeks == [(tp, 5)]

    async def refused(partition: TP, offset: int) -> None:
        raise AssertionError("Partition is not assigned")

    monkeypatch.setattr(consumer, "seek", refused)
    faust_compat.rewind(app, [tp])
    asyncio.run(faust_compat.seek_back(consumer))  # revoked meanwhile: nothing to do here
    assert faust_compat.given_back(app) == {tp: 7}  # ... and commits stay below it


def test_a_rewind_is_dropped_once_its_message_is_read_again_or_at_a_rebalance(
    consumer: Any, seeks: list[tuple[TP, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing to seek back to once the given-back message came again; and a rebalance
    seeks every partition it assigns to its commit itself (an older commit would be
    stale after it)."""
    tp, app = TP("t", 0), consumer.app
    consumer._committed_offset[tp] = 5
    seven, eight = _take(consumer, tp, range(7, 9))
    faust_compat.give_back(app, [seven])
    faust_compat.rewind(app, [tp])
    assert faust_compat.read_again(app, seven)  # came again before the next fetch
    asyncio.run(faust_compat.seek_back(consumer))
    assert seeks == []
    faust_compat.give_back(app, [eight])
    faust_compat.rewind(app, [tp])
    monkeypatch.setattr(app, "rebalancing", True, raising=False)
    asyncio.run(faust_compat.seek_back(consumer))  # Faust seeks to the commit at its end
    monkeypatch.setattr(app, "rebalancing", False, raising=False)
    asyncio.run(faust_compat.seek_back(consumer))
    faust_compat.rewind(app, [tp])  # asked before a rebalance that has ended since
    monkeypatch.setattr(app, "rebalancing_count", app.rebalancing_count + 1)
    asyncio.run(faust_compat.seek_back(consumer))
    assert seeks == []
    faust_compat.rewind(app, [tp])
    asyncio.run(faust_compat.seek_back(consumer))
    assert seeks == [(tp, 5)]


def test_the_drain_makes_the_rewinds_before_each_fetch(
    consumer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Session 28: seeking at once, while the drain handed over the rest of a fetched
    batch, each message it handed over set Faust's read offset past the commit again,
    so the partition, read again from the commit, was dropped (two partitions of the
    fault harness sought back 454 times in 100 s, never read again)."""
    tp, app = TP("t", 0), consumer.app
    consumer._committed_offset[tp] = 5
    order: list[str] = []

    async def seek(partition: TP, offset: int) -> None:
        order.append(f"seek {offset}")

    async def sleep(seconds: float) -> None:  # (no partition to fetch: Faust sleeps)
        order.append("fetch")

    monkeypatch.setattr(consumer, "seek", seek)
    monkeypatch.setattr(consumer, "sleep", sleep)
    monkeypatch.setattr(consumer, "_get_active_partitions", set)
    faust_compat.give_back(app, _take(consumer, tp, range(7, 8)))
    faust_compat.rewind(app, [tp])
    asyncio.run(consumer._wait_next_records(0.01))
    assert order == ["seek 5", "fetch"]


def test_the_seek_that_ends_a_rebalance_stops_the_flow_first(
    consumer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Session 28: the recovery resumes the stream partitions, then seeks them to the
    commit; the drain fetched from the new position before the read offsets were set and
    handed over records the streams skipped, which Faust then filled as a gap (7 events
    of the fault harness lost). The flow is stopped during the seek; the recovery
    resumes it after (Recovery.on_recovery_completed, fingerprinted)."""
    tp = TP("t", 0)
    flowing: list[bool] = []

    async def seek_to_committed() -> dict[TP, int]:
        flowing.append(consumer.flow_active)
        return {tp: 5}

    monkeypatch.setattr(consumer, "seek_to_committed", seek_to_committed)
    consumer.resume_flow()
    asyncio.run(consumer.perform_seek())
    assert flowing == [False]
    assert consumer._read_offset[tp] == 5 and not consumer.flow_active
    assert consumer.suspend_flow.is_set()  # a delivery in hand returns at once
    asyncio.run(consumer.perform_seek())  # (getmany's: the flow stopped already)
    assert flowing == [False, False] and not consumer.flow_active

    async def failed() -> dict[TP, int]:
        raise TimeoutError

    monkeypatch.setattr(consumer, "seek_to_committed", failed)
    consumer.resume_flow()
    with pytest.raises(TimeoutError):
        asyncio.run(consumer.perform_seek())
    assert consumer.flow_active  # a seek that failed leaves the flow as it found it
    consumer._read_offset.clear()


def test_a_given_back_offset_below_the_commit_is_stale(consumer: Any) -> None:
    """The partition went to another worker, which read past the message given back;
    back here, reading from that worker's commit goes on (it would stall otherwise)."""
    tp, app = TP("t", 0), consumer.app
    consumer._committed_offset[tp] = 3
    faust_compat.give_back(app, _take(consumer, tp, range(3, 4)))
    consumer._committed_offset[tp] = 40  # Faust's seek after the rebalance sets it
    (forty,) = _take(consumer, tp, range(40, 41))
    assert faust_compat.read_again(app, forty)
    assert faust_compat.given_back(app) == {}


@pytest.fixture()
def revoke(consumer: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Revoke partitions as Faust does, without the app's part (tables, signals)."""

    async def apps_part(revoked: Any) -> None:
        pass

    monkeypatch.setattr(consumer, "_on_partitions_revoked", apps_part)
    monkeypatch.setattr(consumer.app.topics, "acks_enabled_for", lambda t: t == "t")
    yield lambda tps: asyncio.run(consumer.on_partitions_revoked(set(tps)))
    faust_compat._book(consumer.app, faust_compat._GENERATION_REVOKED).clear()


def _fetched(tp: TP, offset: int, generation: int) -> ConsumerMessage:
    """A message delivered to one stream, fetched in ``generation``."""
    m = ConsumerMessage(tp.topic, tp.partition, offset, 0.0, 0, {}, None, b"v", None,
                        generation_id=generation)  # fmt: skip
    m.incref()
    return m


def test_upstream_records_an_ack_that_comes_after_its_partitions_revocation(
    consumer: Any, revoke: Any
) -> None:
    """When this fails, Faust no longer records it and patch 7 can go."""
    tp, app = TP("t", 0), consumer.app
    app.consumer_generation_id = 1
    consumer._committed_offset[tp] = 10
    m = _fetched(tp, 10, 1)
    revoke([tp])
    assert Consumer.ack.__wrapped__(consumer, m)  # Faust's own
    consumer._committed_offset[tp] = 10  # the partition back here: Faust's seek sets it
    assert consumer._new_offset(tp) == 11  # offset 10 would be committed before it is read


def test_an_ack_after_its_partitions_revocation_is_not_counted(consumer: Any, revoke: Any) -> None:
    """Patch 7: a stream acknowledges the messages it skips (flow suspended, as during the
    revocation's wait for the messages in flight, or an old generation) as well as the
    ones it finished; after the revocation dropped the partition's books, neither counts,
    then or in the next assignment, which reads the message again from the commit.
    Messages of the new assignment count."""
    tp, other, app = TP("t", 0), TP("t", 1), consumer.app
    app.consumer_generation_id = 4
    consumer._committed_offset[tp] = 10
    stale, kept = _fetched(tp, 10, 4), _fetched(other, 3, 4)
    consumer._unacked_messages.update((stale, kept))
    revoke([tp])
    assert not stale.ack(consumer) and stale.acked  # done, and not recorded
    assert stale not in consumer._unacked_messages and 10 not in consumer._acked_index[tp]
    assert kept.ack(consumer)  # a partition this revocation left alone
    app.consumer_generation_id = 5  # assigned again
    consumer._committed_offset[tp] = 10
    assert consumer._new_offset(tp) is None  # nothing to commit past the commit
    again = _fetched(tp, 10, 5)
    assert again.ack(consumer) and consumer._new_offset(tp) == 11


def test_the_livelock_check_skips_a_partition_not_positioned_yet(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Patch 8: Faust's check read the position of a partition aiokafka was still
    resetting (fetched before, then ``await_reset``, as a seek to its beginning does) and the
    ``AssertionError`` crashed the worker; patched, such a partition is skipped and a
    positioned one is checked as before."""
    thread = app.consumer._thread
    resetting, positioned = TP("t", 0), TP("t", 1)
    checked: list[Any] = []

    def fetch_path_fine(now: float, tp: Any) -> bool:
        checked.append(tp)
        return False  # (no error logged: go on to the stream's part of the check)

    async def check() -> None:
        assignment = _assigned([resetting, positioned], 5)
        for tp in (resetting, positioned):
            assignment.state_value(tp).timestamp = 1_000  # fetched from, once
        assignment.state_value(resetting).await_reset(1)  # its position is being reset
        fetcher = SimpleNamespace(_subscriptions=SimpleNamespace(
            subscription=SimpleNamespace(assignment=assignment)))  # fmt: skip
        monkeypatch.setattr(thread, "_consumer", SimpleNamespace(_fetcher=fetcher))
        monkeypatch.setattr(thread, "_verify_aiokafka_event_path", fetch_path_fine)
        monkeypatch.setattr(thread, "time_started", 1.0, raising=False)  # (set by start)
        with pytest.raises(AssertionError):  # as Faust ships it
            AIOKafkaConsumerThread.verify_event_path.__wrapped__(thread, 2_000.0, resetting)
        checked.clear()
        for tp in (resetting, positioned, TP("t", 2)):  # (t, 2): no longer assigned
            assert thread.verify_event_path(2_000.0, tp) is None

    asyncio.run(check())
    assert checked == [positioned]


def test_revoking_lasts_from_the_rebalance_start_to_the_revoked_signal(app: Any) -> None:
    app.rebalancing, count = False, app.rebalancing_count
    assert not faust_compat.revoking(app)
    app.rebalancing, app.rebalancing_count = True, count + 1  # App.on_rebalance_start
    assert faust_compat.revoking(app)
    asyncio.run(app.on_partitions_revoked.send(set()))  # after Faust's wait_empty
    assert not faust_compat.revoking(app) and faust_compat.rebalancing(app)
    app.rebalancing_count += 1  # the next rebalance, its revoked signal missed: assigned
    assert faust_compat.revoking(app)
    asyncio.run(app.on_partitions_assigned.send(set()))
    assert not faust_compat.revoking(app)
    app.rebalancing = False


def test_other_partitions_in_flight_do_not_hold_a_commit(consumer: Any) -> None:
    tp, other = TP("t", 0), TP("t", 1)
    _take(consumer, other, range(0, 1))
    for m in _take(consumer, tp, range(0, 5)):
        _ack(consumer, m)
    assert consumer._new_offset(tp) == 5


def test_delivery_that_does_not_block_needs_no_task(consumer: Any) -> None:
    async def main() -> None:
        before = len(asyncio.all_tasks())
        seen: list[int] = []

        async def deliver() -> str:
            seen.append(len(asyncio.all_tasks()))
            return "delivered"

        suspended = asyncio.Event()
        result = await consumer.wait_first(deliver(), suspended.wait())
        assert (result.results, result.stopped) == (["delivered"], False)
        assert seen == [before]  # ran in the caller's task: no new task

    asyncio.run(main())


def test_delivery_that_blocks_finishes_or_is_cancelled_as_before(consumer: Any) -> None:
    async def main() -> None:
        space = asyncio.get_running_loop().create_future()
        cancelled = []

        async def deliver(waits_for: asyncio.Future[str]) -> str:
            try:
                return await waits_for  # a full stream queue
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        suspended = asyncio.Event()
        waiting = asyncio.ensure_future(consumer.wait_first(deliver(space), suspended.wait()))
        await asyncio.sleep(0)
        space.set_result("delivered")
        assert (await waiting).results == ["delivered"]

        blocked = asyncio.get_running_loop().create_future()
        waiting = asyncio.ensure_future(consumer.wait_first(deliver(blocked), suspended.wait()))
        await asyncio.sleep(0)
        suspended.set()  # a rebalance stops the flow: the blocked delivery is cancelled
        result = await waiting
        assert cancelled == [True] and len(result.results) == 1

    consumer.loop.run_until_complete(main())  # mode schedules its waiters on the app's loop


def test_the_worker_consumer_reads_committed_records_only(app: Any) -> None:
    """Patch 4: the consumer Faust builds for the worker reads ``read_committed`` (Faust
    would build it ``read_uncommitted``: the unpatched builder shows it), and aiokafka's
    fetcher gets that level when the consumer starts (its ``start`` is fingerprinted)."""

    async def build() -> tuple[str, str]:
        thread = app.consumer._thread
        patched = thread._create_worker_consumer(app.transport)
        as_faust_builds = AIOKafkaConsumerThread._create_worker_consumer.__wrapped__(
            thread, app.transport
        )
        levels = patched._isolation_level, as_faust_builds._isolation_level
        for built in (patched, as_faust_builds):  # never started: closes its client only
            await built.stop()
        return levels

    assert asyncio.run(build()) == ("read_committed", "read_uncommitted")


class _Fetched:
    """What ``FetchResult.getall`` iterates (aiokafka's ``PartitionRecords``): records, and
    ``next_fetch_offset``, which ends past offsets that hold none (a transaction marker)."""

    def __init__(self, start: int, offsets: list[int], end: int) -> None:
        self.next_fetch_offset, self._offsets, self._end = start, offsets, end

    def __iter__(self) -> Any:
        for offset in self._offsets:
            self.next_fetch_offset = offset + 1
            yield Message("t", 0, offset, 0.0, 0, {}, None, b"v", None)
        self.next_fetch_offset = self._end


def _fetch(assignment: Any, start: int, offsets: list[int], end: int, tp: Any = None) -> list[int]:
    """One fetch of ``tp`` (default ("t", 0)) handed out by ``getall``: the offsets it gave."""
    result = FetchResult(tp or TP("t", 0), assignment=assignment, backoff=0,
                         partition_records=_Fetched(start, offsets, end))  # fmt: skip
    return [m.offset for m in result.getall()]


def _assigned(tps: list[Any], at: int) -> Any:
    """aiokafka's assignment of ``tps``, each at position ``at`` (needs an event loop)."""
    assignment = Assignment(tps)
    for tp in tps:
        assignment.state_value(tp).seek(at)
    return assignment


def test_the_offsets_a_fetch_passes_without_a_record_are_noted() -> None:
    """Patch 5: the span from the last record handed out to the position ``getall`` left."""
    tp = TP("t", 0)

    async def fetches() -> list[Any]:
        assignment = _assigned([tp], 5)
        state = assignment.state_value(tp)
        noted = []
        for start, offsets, end in [
            (5, [5, 6], 8),  # two records, then a commit marker at 7
            (8, [], 10),  # an aborted transaction's record and its marker: nothing given
            (10, [10], 11),  # a record: nothing skipped after it
            (11, [], 12),  # a marker alone
        ]:
            assert _fetch(assignment, start, offsets, end) == offsets
            assert state.position == end
            noted.append(getattr(state, "churnwatch_skipped", None))
        state.seek(20)  # a seek (a rebalance): what lies between is unknown
        _fetch(assignment, 20, [], 21)
        noted.append(getattr(state, "churnwatch_skipped", None))
        return noted

    assert asyncio.run(fetches()) == [(7, 8), (7, 10), None, (11, 12), (20, 21)]


def test_a_commit_goes_past_the_offsets_without_a_record(
    consumer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Patch 5: a partition ending in a commit marker is committed to its end, not to the
    marker (its lag stayed 1 for good); never into or past a record."""
    tp, changelog = TP("t", 0), TP("changelog", 0)

    async def commits() -> list[Any]:
        assignment = Assignment([tp, changelog])
        # where aiokafka's consumer keeps the assignment (the Faust consumer is not started)
        subscription = SimpleNamespace(subscription=SimpleNamespace(assignment=assignment))
        monkeypatch.setattr(
            consumer._thread, "_consumer", SimpleNamespace(_subscription=subscription)
        )
        monkeypatch.setattr(consumer.app.topics, "acks_enabled_for", lambda t: t == "t")
        for p in (tp, changelog):
            assignment.state_value(p).seek(10)
            consumer._committed_offset[p] = 10
        got = []
        for m in _take(consumer, tp, range(10, 13)):
            _ack(consumer, m)
        _fetch(assignment, 10, [10, 11, 12], 14)  # a marker at 13
        assert faust_compat.skipped_to(consumer, tp, 13) == 14
        assert faust_compat.skipped_to(consumer, tp, 12) == 12  # a record is there
        got.append(consumer._filter_committable_offsets([tp]))  # past the marker
        consumer._committed_offset[tp] = 14
        got.append(consumer._filter_committable_offsets([tp]))  # nothing more to commit
        _fetch(assignment, 14, [], 16)  # an aborted record and its marker
        got.append(consumer._filter_committable_offsets([tp]))  # its acks are all committed
        consumer._committed_offset[tp] = 16
        held = _take(consumer, tp, range(16, 18))
        _fetch(assignment, 16, [16, 17], 19)
        _ack(consumer, held[1])  # 16 still in flight: the commit stays below it
        got.append(consumer._filter_committable_offsets([tp]))
        _ack(consumer, held[0])
        got.append(consumer._filter_committable_offsets([tp]))
        consumer._acked[changelog] = []  # a changelog (no acks): Faust does not commit it
        _fetch(assignment, 10, [], 12)
        got.append(consumer._filter_committable_offsets([changelog]))
        return got

    assert asyncio.run(commits()) == [{tp: 14}, {}, {tp: 16}, {}, {tp: 19}, {}]


def test_the_holes_a_fetch_passes_are_noted_before_between_and_after_its_records() -> None:
    tp = TP("t", 0)

    async def fetches() -> list[Any]:
        assignment = _assigned([tp], 5)
        state = assignment.state_value(tp)
        _fetch(assignment, 5, [7, 8, 11, 12], 15)  # markers at 5-6, 9-10, 13-14
        _fetch(assignment, 15, [], 16)  # one more alone
        _fetch(assignment, 16, [16, 17], 18)  # none
        return list(getattr(state, "churnwatch_holes", ()))

    assert asyncio.run(fetches()) == [(5, 7), (9, 11), (13, 15), (15, 16)]


def test_holes_after_offset_0_do_not_stop_the_commits(
    consumer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust fills a hole from its read offset, which is 0 after reading offset 0 and
    taken as "nothing read": a record at 0, two markers, then records, and the partition
    was committed to 1 for good. The holes the fetcher noted fill it (patch 5)."""
    filled, faust_alone = TP("t", 0), TP("t", 1)

    async def commits() -> list[Any]:
        assignment = _assigned([filled, faust_alone], 0)
        subscription = SimpleNamespace(subscription=SimpleNamespace(assignment=assignment))
        monkeypatch.setattr(
            consumer._thread, "_consumer", SimpleNamespace(_subscription=subscription)
        )
        got = []
        for tp in (filled, faust_alone):
            _fetch(assignment, 0, [0], 1, tp)
            _fetch(assignment, 1, [3, 4], 5, tp)  # markers at 1 and 2
            for m in _take(consumer, tp, range(1)):
                _ack(consumer, m)
        assignment.state_value(faust_alone).churnwatch_holes.clear()  # as Faust alone
        got.append(consumer._filter_committable_offsets([filled, faust_alone]))
        consumer._committed_offset.update(got[-1])
        taken = _take(consumer, filled, range(3, 5)) + _take(consumer, faust_alone, range(3, 5))
        for m in taken:
            _ack(consumer, m)
        got.append(consumer._filter_committable_offsets([filled, faust_alone]))
        return got

    assert asyncio.run(commits()) == [{filled: 1, faust_alone: 1}, {filled: 5}]


def test_committed_offset_reads_the_consumers_last_commit(consumer: Any) -> None:
    tp = TP("t", 3)
    assert faust_compat.committed_offset(consumer, tp) is None
    consumer._committed_offset.update({tp: 42})  # as Consumer._commit_offsets records it
    assert faust_compat.committed_offset(consumer, tp) == 42


def test_store_locally_fills_the_table_without_a_changelog_send(app: Any) -> None:
    table = app.Table("compat-probe", default=None, key_type=bytes, value_type=bytes)
    sent = []
    table.on_key_set = lambda key, value: sent.append(key)  # what __setitem__ sends
    faust_compat.store_locally(table, b"k", b"v")
    assert table[b"k"] == b"v" and sent == []
    table[b"k2"] = b"v2"
    assert sent == [b"k2"]  # the path it avoids is still the one that sends


def test_graceful_worker_runs_its_hook_before_the_stop(app: Any) -> None:
    calls: list[str] = []

    async def before_stop() -> None:
        calls.append("drain")

    worker_class = faust_compat.graceful_worker(before_stop)
    assert issubclass(worker_class, ModeWorker)

    async def main() -> None:
        worker = worker_class.__new__(worker_class)  # handlers only: no event loop takeover
        await worker._before_stop(lambda: calls.append("stop"))

    asyncio.run(main())
    assert calls == ["drain", "stop"]


def test_recovery_pending_is_what_the_recovery_still_waits_for(app: Any) -> None:
    r = app.tables.recovery
    waiting, done = TP("changelog", 0), TP("changelog", 1)
    assert faust_compat.recovery_pending(app) is None  # no recovery running
    r.active_tps.update({waiting, done})
    r.active_highwaters.update({waiting: 15, done: 7})  # as _build_highwaters records them
    r.active_offsets.update({waiting: 14, done: 7})
    r._set_recovery_started()
    try:
        started, pending = faust_compat.recovery_pending(app)
        assert started == r._recovery_started_at
        assert pending == [faust_compat.Pending(waiting, 14, 15, None)]
        r._active_events_received_at[waiting] = 123.0  # as _slurp_changelogs records one
        assert faust_compat.recovery_pending(app)[1][0].last_event_at == 123.0
        assert r.need_recovery()
        faust_compat.count_as_read(app, waiting, 15)
        assert not r.need_recovery() and faust_compat.recovery_pending(app)[1] == []
        r.signal_recovery_start.clear()
        faust_compat.restart_recovery(app)
        assert r.signal_recovery_start.is_set()  # what a rebalance sets (on_rebalance)
    finally:
        r._set_recovery_ended()
        r.signal_recovery_start.clear()
        r.active_tps.clear()
        r.active_highwaters.clear()
        r.active_offsets.clear()


def test_commits_asked_are_booked_even_when_kafka_refuses_them(
    consumer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the worker's "stopped:" log line reports: a commit refused (a worker expelled
    from its group) is booked all the same, so the log says "asked for"."""
    tp = TP("t", 2)

    async def refused(offsets: Any) -> bool:
        return False  # as Consumer._commit when Kafka says the group rebalanced

    async def flushed() -> None:
        pass

    monkeypatch.setattr(consumer, "assignment", lambda: {tp})
    monkeypatch.setattr(consumer, "_commit", refused)
    monkeypatch.setattr(consumer.app.producer, "flush", flushed)
    assert asyncio.run(consumer._commit_offsets({tp: 7})) is False
    assert faust_compat.commits_asked(consumer.app)[tp] == 7
    consumer.app.monitor.tp_committed_offsets.clear()


def test_generation_is_the_last_assignments(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "consumer_generation_id", 3)  # as the rebalance listener sets it
    assert faust_compat.generation(app) == 3


def test_group_generation_is_none_before_the_consumer_runs(app: Any) -> None:
    assert faust_compat.group_generation(app) is None  # (the module's app never starts)


def test_group_generation_reads_the_coordinators(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where Faust's rebalance listener reads it (``ConsumerRebalanceListener
    .on_partitions_assigned``): the aiokafka consumer's group coordinator."""
    from aiokafka.consumer.group_coordinator import GroupCoordinator

    coordinator = GroupCoordinator.__new__(GroupCoordinator)  # its state only
    coordinator.generation = 7
    aiokafka_consumer = type("AIOKafkaConsumer", (), {"_coordinator": coordinator})()
    monkeypatch.setattr(app.consumer._thread, "_consumer", aiokafka_consumer)
    assert faust_compat.group_generation(app) == 7
    coordinator.reset_generation = GroupCoordinator.reset_generation.__get__(coordinator)
    coordinator.request_rejoin = lambda: None
    coordinator.reset_generation()  # what the heartbeat that finds the member expelled does
    assert faust_compat.group_generation(app) == -1
