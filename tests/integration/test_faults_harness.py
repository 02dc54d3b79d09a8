"""The fault-injection harness at the CI scale (issue #13, item 3).

``benchmarks/faults.py --quick`` on a broker of its own (it stops and restarts it, so it
never uses ``KAFKA_BOOTSTRAP_SERVERS``): 60 accounts x 40 days as unkeyed arrays, two
workers, one SIGKILL while they work through the input, a third worker that joins and
leaves, a 6 s broker outage; then the harness's checks (every account's events applied
once, no doubled or missing alert ids, model versions that never go back, readiness
after each restart, log lines in the outage, churn alert ids equal to a clean run's
with a fixed model). The full scale is a command (docs/operations.md, "The fault
harness").

Known and open (issue #13, docs/operations.md "Replays under faults"): with unkeyed
input, a kill while two workers work through a backlog drops events as late (the
account agents apply what they hold at each rebalance, and the slower ingest's events
then fall more than the allowed lateness behind). Until that is fixed this test
*expects* those checks to fail (xfail, not strict: it passes once they hold) and
asserts every other check. (Fixed: a worker SIGKILLed right after it applied the model
import came back scoring with an untrained churn model; the stale-model check is
asserted again, ``tests/integration/test_model_import_kill.py``.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "faults.py"
# the checks a lost event fails (the churn alerts follow the events they are decided on)
KNOWN_LOSS = {
    "accounts whose events_applied != distinct input",
    "events applied, all accounts",
    "churn alerts: fault run / clean run / both",
    # the same cause (docs/operations.md, keyed input under the CI faults): a revocation
    # waits up to the merge's stall limit (60 s) for the messages an ingest holds, so
    # the workers are not ready again within 15 s of the broker's return in such runs
    "all ready after the broker restart, s",
}


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
    failed = set(orjson.loads(figures.read_bytes())["failed"])
    assert failed <= KNOWN_LOSS, report  # every other check holds
    if failed:
        pytest.xfail(f"issue #13, events lost under faults with unkeyed input:\n{report}")
    assert done.returncode == 0, report
