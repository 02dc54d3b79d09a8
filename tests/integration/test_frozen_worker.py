"""A worker frozen past its session timeout while another worker shares its group.

The broker expels the frozen one and gives its partitions to the other, which restores
their states from the changelog and applies on. Thawed, the frozen worker still held a
buffer and its partitions until a heartbeat told it otherwise: it used to write that
buffer's states to the changelog *after* the new owner's newer ones, so that the
changelog's last record of an account lacked events the new owner had applied and
committed, and a restore from it lost them (``streams.agents.accounts.MemberFence``).
"""

from __future__ import annotations

import signal
import time

import pytest

from models.account import load_state
from tests.integration.conftest import produce, read_all
from tests.integration.test_shutdown import _stream

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def changelog_history(bootstrap: str, topic: str) -> dict[str, list[int]]:
    """Each account's ``events_applied`` in the order of its changelog records (an
    account's records are in one partition, which ``read_all`` reads in order)."""
    history: dict[str, list[int]] = {}
    for r in read_all(bootstrap, topic, timeout=60):
        if r.value is not None:
            state = load_state(r.value)
            history.setdefault(state.account_id, []).append(state.events_applied)
    return history


@pytest.mark.timeout(300)
def test_a_worker_thawed_after_its_partitions_moved_writes_no_older_state(
    worker_factory, kafka_bootstrap, tmp_path
):
    n_accounts, per_account = 1000, 60
    first = worker_factory().launch()  # the tests' 6 s session
    other = worker_factory(CHURNWATCH_DATA_DIR=str(tmp_path / "data2")).launch()
    first.wait_ready()
    other.wait_ready()
    s = first.settings
    produce(kafka_bootstrap, s.usage_topic, _stream(n_accounts, per_account))

    def applied() -> float:
        return sum(w.metrics().get("churnwatch_events_applied_total", 0.0) for w in (first, other))

    # frozen near the end of the backlog, so that the other worker finishes the accounts
    # of the buffer the frozen one holds, and writes nothing of them after its thaw
    deadline = time.monotonic() + 120
    while applied() < 0.9 * n_accounts * per_account and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.proc is not None
    first.proc.send_signal(signal.SIGSTOP)
    time.sleep(10)
    first.proc.send_signal(signal.SIGCONT)
    time.sleep(15)  # it hears of the expulsion, rejoins, and the two share the rest
    log = first.log_path.read_text()  # aiokafka's words for an expulsion (pinned)
    assert "UnknownMemberIdError" in log or "member_id was not recognized" in log, log[-4000:]
    assert first.stop(signal.SIGTERM) == 0
    assert other.stop(signal.SIGTERM) == 0

    history = changelog_history(kafka_bootstrap, f"{s.app_id}-accounts-changelog")
    assert len(history) == n_accounts
    older_last = {a: h[-3:] for a, h in history.items() if h[-1] != max(h)}
    assert not older_last, f"an older state written last: {older_last}"
    short = {a: h[-1] for a, h in history.items() if h[-1] != per_account}
    assert not short, f"accounts restored short of their {per_account} events: {short}"

    # and a worker restoring everything from the changelog applies nothing again
    fresh = worker_factory(CHURNWATCH_DATA_DIR=str(tmp_path / "data3")).start()
    time.sleep(3)
    for a in (0, n_accounts // 2, n_accounts - 1):
        status, doc = fresh.get_json(f"/accounts/acc-{a}")
        assert status == 200 and doc["events_applied"] == per_account, (a, doc)
