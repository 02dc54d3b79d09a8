"""The models table as every worker reads it: only snapshots signed with the key load."""

from models.churn import make_churn_model
from models.learner import OnlineLearner
from streams.metrics import Metrics
from streams.snapshots import ModelCache, model_key

KEY = b"unit-test-model-key-0123456789ab"


def test_unsigned_or_forged_snapshots_are_skipped_counted_and_run_no_code(crafted_pickle):
    evil, marker = crafted_pickle
    table: dict[bytes, bytes] = {}
    metrics = Metrics()
    cache = ModelCache(table, metrics, KEY)
    good = OnlineLearner(make_churn_model(), name="churn")
    good.version = 6
    table[model_key("churn")] = good.snapshot(KEY)
    assert cache.current().churn.model_id == "churn-v7"

    other = OnlineLearner(make_churn_model(), name="churn").snapshot(
        b"another-key-0123456789abcdefghij"
    )
    for raw in (b"CWLN\x02" + evil, b"CWLN\x03" + bytes(32) + evil, other):
        table[model_key("churn")] = raw
        assert cache.current().churn.model_id == "churn-v7"  # the last good one stays
    table[model_key("churn")] = b"CWLN\x03" + b"short"
    cache.current()
    skipped = metrics.internal_skipped.labels
    assert skipped("models", "bad_signature")._value.get() == 4.0
    assert not marker.exists()


def test_every_worker_applies_a_snapshot_as_soon_as_it_reads_it(tmp_path):
    """Faust applies what a worker reads of a table's changelog in batches of the
    table's buffer sizes (default 1000), or at the next rebalance: at the default, a
    snapshot written after a worker's last rebalance never reached its scoring (a worker
    scored with an untrained churn-v0 for good after a kill right after a model import;
    ``tests/integration/test_model_import_kill.py`` shows it against a broker)."""
    import faust

    from streams.snapshots import models_table

    app = faust.App("cache-test", datadir=str(tmp_path), store="memory://", autodiscover=False)
    table = models_table(app)
    assert table.recovery_buffer_size == 1  # while recovering
    assert table.standby_buffer_size == 1  # and while following the changelog afterwards
