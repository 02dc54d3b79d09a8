"""The fault-injection harness at the CI scale (issue #13, item 3).

``benchmarks/faults.py --quick`` on a broker of its own (it stops and restarts it, so it
never uses ``KAFKA_BOOTSTRAP_SERVERS``): 60 accounts x 40 days as unkeyed arrays, two
workers, one SIGKILL while they work through the input, a third worker that joins and
leaves, a 6 s broker outage; then the harness's checks (every account's events applied
once, no doubled or missing alert ids, model versions that never go back, readiness
after each restart, log lines in the outage, churn alert ids equal to a clean run's
with a fixed model). The full scale is a command (docs/operations.md, "The fault
harness").

Fixed (issue #13): with unkeyed input, a kill while two workers worked through a
backlog lost events (615 of 17,638 in the CI run on 00cbb23; this test was an xfail):
at each rebalance the account agents applied what their merges held ahead of the
slower ingest, whose events then came more than the allowed lateness too late. Now
the agents give what they hold back to Kafka at a rebalance and read it again after
it (``streams.faust_compat.give_back``). And the churn alert ids of the two runs
differed by timing alone while a deployment scored its first input with an untrained
model: each deployment now gets its input once it scores with the fixed model.
(Fixed before: a worker SIGKILLed right after it applied the model import came back
scoring with an untrained churn model, ``tests/integration/test_model_import_kill.py``.)

Fixed (issue #13, session 12): with the input sent while the faults happen
(``--produce live``, 86,400 times real time), a kill lost 232-691 of 17,638 events: a
worker killed while it wrote a buffer's states to the changelog persisted some
accounts and not others, and after its restart the partition clock, taken from the
most advanced state loaded, made the others' re-read events late. That mode is a
benchmark command, not run here: 3 of 3 local runs lost nothing, and one run under
the CI's load lost 1 event (docs/operations.md, "Replays under faults").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "faults.py"


@pytest.mark.timeout(600)
def test_the_fault_harness_finds_nothing_lost_or_doubled(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(HARNESS), "--quick", "--out", str(tmp_path / "run"),
         "--json", str(figures)],
        capture_output=True, text=True, timeout=580,
    )  # fmt: skip
    report = f"{done.stdout}\n--- progress ---\n{done.stderr[-6000:]}"
    assert figures.exists(), report
    failed = orjson.loads(figures.read_bytes())["failed"]
    assert not failed, report
    assert done.returncode == 0, report
