"""Prometheus metrics: one object built on an injected registry.

Every name starts with ``churnwatch_``; units are in the names; labels are
bounded (topic, event type, error kind, alert kind/action, model name, partition)
— never an account id. Each worker process serves its own ``/metrics``; with
several workers, Prometheus scrapes each one and queries aggregate with ``sum``.
The full list with meanings is in ``docs/metrics.md``.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from models.alerting import CHURN_ACTIONS
from models.contract import ERROR_KINDS
from models.outcomes import OUTCOMES
from models.risk import KINDS

# No ``_created`` sample beside each counter and histogram (prometheus_client's creation
# timestamps, a process-wide switch): nothing reads them, and they were 183 of a
# worker's 615 samples, each a series Prometheus stores, and a quarter of a scrape's work.
disable_created_metrics()

# the actions ``models.sharing.sharing_action`` recommends (pre-initialised label values)
SHARING_ACTIONS = ("household_verification", "extra_member_offer")
# (topic, kind) of the internal records churnwatch can skip (``streams.skips``)
INTERNAL_SKIPS = (
    ("account_events", "not_json"),
    ("account_events", "bad_shape"),
    ("accounts", "bad_state"),
    ("models", "bad_snapshot"),
    ("models", "bad_signature"),
    ("training", "not_json"),
    ("training", "bad_shape"),
    ("training", "bad_import"),
    ("training", "bad_signature"),
    ("training", "learn_failed"),
)

# Milliseconds matter: processing latency of a batch is usually 1-50 ms.
LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
# The event loop held by CPU work: from none to past a scrape's or a heartbeat's timeout.
LOOP_DELAY_BUCKETS_S = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Event-time lag: from sub-second (live) to days (replay of history).
EVENT_LAG_BUCKETS_S = (
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0, 604800.0,
)  # fmt: skip
SCORE_BUCKETS = tuple(round(i / 20, 2) for i in range(1, 21))
LABEL_DELAY_BUCKETS_S = tuple(d * 86400.0 for d in (1, 3, 7, 14, 21, 30, 45, 60))


def children(metric: Counter) -> Callable[..., Counter]:
    """``metric.labels``, each child looked up once per label values (use it for labels
    of a bounded set only: the cache keeps every child it made, as the metric does).

    >>> m = Counter("c", "a counter", ["kind"], registry=CollectorRegistry())
    >>> child = children(m)
    >>> child("a").inc(); child("a").inc()
    >>> child("a") is m.labels("a"), m.labels("a")._value.get()
    (True, 2.0)
    """
    return functools.lru_cache(maxsize=None)(metric.labels)


class Metrics:
    """All churnwatch metrics, registered on ``registry`` (a fresh one per test)."""

    def __init__(
        self, registry: CollectorRegistry | None = None, prefix: str = "churnwatch"
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r, p = self.registry, prefix

        # Pipeline
        self.events_consumed = Counter(
            f"{p}_events_consumed_total", "Valid input events parsed, by topic and event type",
            ["topic", "type"], registry=r,
        )  # fmt: skip
        self.messages_consumed = Counter(
            f"{p}_messages_consumed_total", "Kafka messages read from input topics",
            ["topic"], registry=r,
        )  # fmt: skip
        self.unaligned_events = Counter(
            f"{p}_input_unaligned_events_total",
            "Valid input events in a message not keyed by their account_id (unkeyed arrays, "
            "wrong keys): safe with one worker, dropped as late when several read them",
            registry=r,
        )  # fmt: skip
        self.dead_letters = Counter(
            f"{p}_dead_letters_total", "Bad input sent to the dead-letter topic, by error kind",
            ["kind"], registry=r,
        )  # fmt: skip
        self.internal_skipped = Counter(
            f"{p}_internal_records_skipped_total",
            "Records of churnwatch's own topics and changelogs that could not be read and "
            "were skipped, by topic (training, account_events, models, accounts) and kind",
            ["topic", "kind"], registry=r,
        )  # fmt: skip
        self.events_applied = Counter(
            f"{p}_events_applied_total", "Events applied to account state", registry=r
        )
        self.duplicates_dropped = Counter(
            f"{p}_duplicates_dropped_total", "Events dropped as duplicates of an event_id",
            registry=r,
        )  # fmt: skip
        self.late_dropped = Counter(
            f"{p}_late_events_dropped_total",
            "Events older than the watermark minus the allowed lateness, dropped", registry=r,
        )  # fmt: skip
        self.processing_latency = Histogram(
            f"{p}_processing_latency_seconds",
            "From a batch's receipt by the account agent to its scores being published",
            buckets=LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.loop_delay = Histogram(
            f"{p}_event_loop_delay_seconds",
            "How late the event loop ran a 0.25 s timer (held by CPU work meanwhile)",
            buckets=LOOP_DELAY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.event_time_lag = Histogram(
            f"{p}_event_time_lag_seconds",
            "Wall clock minus event time of events applied (large during replays)",
            buckets=EVENT_LAG_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.consumer_lag = Gauge(
            f"{p}_consumer_lag_messages", "Messages behind the partition end, per input partition",
            ["topic", "partition"], registry=r,
        )  # fmt: skip
        self.events_held = Gauge(
            f"{p}_input_events_held",
            "Valid input events held to be released in event-time order across partitions",
            registry=r,
        )  # fmt: skip
        self.merge_held = Gauge(
            f"{p}_account_events_held",
            "Account events held to be applied in event-time order across the ingests of "
            "several workers (the slowest input partition holds the others back)",
            registry=r,
        )  # fmt: skip
        self.merge_forced = Counter(
            f"{p}_account_events_forced_total",
            "Account events applied before every input partition passed them (an upstream "
            "stalled, or the merge full): they may make a slower worker's events late",
            registry=r,
        )  # fmt: skip
        self.merge_woken = Counter(
            f"{p}_idle_partitions_woken_total",
            "Input partitions another worker's ingest had reported idle, found by the account "
            "agent with more written than that worker had read: events wait for them",
            registry=r,
        )  # fmt: skip
        self.given_back = Counter(
            f"{p}_messages_given_back_total",
            "Messages an agent held at a rebalance or a stop (or read after one it held) "
            "and gave back to Kafka unacknowledged, to be read again (none of their events "
            "is lost or applied early)",
            ["agent"], registry=r,
        )  # fmt: skip
        self.watermark = Gauge(
            f"{p}_watermark_timestamp_seconds",
            "Event-time watermark (highest event time seen minus allowed lateness) per partition",
            ["partition"], registry=r,
        )  # fmt: skip
        self.accounts = Gauge(
            f"{p}_accounts_in_state",
            "Decoded account states in this worker's memory (the cache; the rest are on disk)",
            registry=r,
        )
        self.state_flush_seconds = Histogram(
            f"{p}_state_flush_seconds", "Time to persist the dirty account states of one batch",
            buckets=LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.state_writes = Counter(
            f"{p}_state_writes_total", "Account states written to the changelog", registry=r
        )
        self.writes_fenced = Counter(
            f"{p}_state_writes_fenced_total",
            "Buffers the account agent applied but did not write, because the worker may "
            "have been expelled from its group (its event loop stalled near the session "
            "timeout, or the group generation changed): their messages are read again",
            registry=r,
        )  # fmt: skip
        self.state_bytes = Counter(
            f"{p}_state_written_bytes_total",
            "Bytes of account states written to the changelog (divided by "
            "churnwatch_state_writes_total: the mean encoded state)",
            registry=r,
        )
        self.census_prefixes = Gauge(
            f"{p}_census_prefixes",
            "Network prefixes in this worker's census of shared networks (bounded)",
            registry=r,
        )
        self.census_entries = Gauge(
            f"{p}_census_entries",
            "(prefix, account) pairs in this worker's census of shared networks (bounded)",
            registry=r,
        )
        self.state_recovered = Counter(
            f"{p}_state_recovered_records_total",
            "Account-state changelog records replayed into the local store at recovery "
            "(with the RocksDB store only the tail written since the last run)",
            registry=r,
        )
        self.recovery_stalls = Counter(
            f"{p}_recovery_stalls_total",
            "Table recoveries that read nothing from a changelog partition for "
            "CHURNWATCH_RECOVERY_STALL_S, by what the watchdog did: read_to_end (only "
            "markers were left), restarted, gave_up (the worker exited)",
            ["action"],
            registry=r,
        )
        for action in ("read_to_end", "restarted", "gave_up"):
            self.recovery_stalls.labels(action)
        self.accounts_erased = Counter(
            f"{p}_accounts_erased_total",
            "Accounts erased (account_erased): state deleted, tombstones on the changelog "
            "and risk-scores",
            registry=r,
        )

        # Outputs
        self.scores_published = Counter(
            f"{p}_scores_published_total", "Messages published to risk-scores", registry=r
        )
        self.alerts = Counter(
            f"{p}_alerts_total", "Alerts published, by kind and recommended action",
            ["kind", "action"], registry=r,
        )  # fmt: skip
        self.alert_reasons = Counter(
            f"{p}_alert_reasons_total", "Top reason features of published alerts",
            ["kind", "feature"], registry=r,
        )  # fmt: skip
        self.scores_above_threshold = Counter(
            f"{p}_scores_above_threshold_total",
            "Published scores at or above their kind's alert threshold "
            "(churnwatch_alert_threshold{level=\"raise\"}), by kind", ["kind"], registry=r,
        )  # fmt: skip
        self.score_distribution = Histogram(
            f"{p}_score", "Scores published, by kind (churn, sharing)", ["kind"],
            buckets=SCORE_BUCKETS, registry=r,
        )  # fmt: skip
        self.examples_published = Counter(
            f"{p}_training_examples_total", "Labelled examples published for training",
            ["model", "label"], registry=r,
        )  # fmt: skip

        # Models (set by the learner; read by every worker from the snapshots)
        self.model_version = Gauge(
            f"{p}_model_version", "Version of the model snapshot in use", ["model"], registry=r
        )
        self.model_examples = Gauge(
            f"{p}_model_examples_learned", "Examples the model has learned from", ["model"],
            registry=r,
        )  # fmt: skip
        self.model_auc = Gauge(
            f"{p}_model_roc_auc", "Prequential ROC AUC (score before learn)", ["model"], registry=r
        )
        self.model_logloss = Gauge(
            f"{p}_model_log_loss", "Prequential log loss", ["model"], registry=r
        )
        self.model_calibration_error = Gauge(
            f"{p}_model_calibration_error",
            "Expected calibration error of prequential predictions", ["model"], registry=r,
        )  # fmt: skip
        self.model_drifts = Gauge(
            f"{p}_model_drift_detections", "ADWIN drift detections on the model's error",
            ["model"], registry=r,
        )  # fmt: skip
        self.model_learned_offset = Gauge(
            f"{p}_model_learned_offset", "Training offset the model's snapshot learns on from",
            ["model"], registry=r,
        )  # fmt: skip
        self.model_snapshot_bytes = Gauge(
            f"{p}_model_snapshot_bytes",
            "Size of the learner's last snapshot (model, metrics and checkpoint), per model",
            ["model"], registry=r,
        )  # fmt: skip
        self.training_redelivered = Counter(
            f"{p}_training_redelivered_total", "Re-delivered training examples skipped", ["model"],
            registry=r,
        )  # fmt: skip
        self.label_delay = Histogram(
            f"{p}_label_delay_seconds", "Event time from an observation to its label",
            ["model"], buckets=LABEL_DELAY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.alert_outcomes = Counter(
            f"{p}_alert_outcomes_total",
            "Alerted accounts whose label arrived, by kind and whether the alert proved right",
            ["kind", "outcome"], registry=r,
        )  # fmt: skip
        self.action_outcomes = Counter(
            f"{p}_action_outcomes_total",
            "Alerts followed for CHURNWATCH_ACTION_WINDOW_DAYS of event time, by kind, "
            "recommended action and what the account did first (no_change: nothing decisive)",
            ["kind", "action", "outcome"], registry=r,
        )  # fmt: skip
        self.model_calibration = Gauge(
            f"{p}_model_calibration",
            "Reliability diagram of prequential predictions: per score bin (lower edge), the "
            "mean predicted probability (stat=predicted) and the observed positive rate "
            "(stat=observed); empty bins are not exported",
            ["model", "bin", "stat"], registry=r,
        )  # fmt: skip

        # The worker itself
        self.build_info = Gauge(
            f"{p}_build_info", "churnwatch build (always 1): its version and its main libraries",
            ["version", "python", "faust", "river"], registry=r,
        )  # fmt: skip
        self.build_info.labels(*_versions()).set(1)
        self.alert_threshold = Gauge(
            f"{p}_alert_threshold",
            "Alert hysteresis in effect, by kind: the score that raises an alert (level=raise) "
            "and the score it must fall below before the next one (level=reset)",
            ["kind", "level"], registry=r,
        )  # fmt: skip
        self.ready = Gauge(
            f"{p}_ready",
            "1 when the worker is ready (partitions assigned, state recovered), else 0 "
            "(the same answer as /readyz, at scrape time)", registry=r,
        )  # fmt: skip
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes
        PlatformCollector(registry=r)  # python_info
        GCCollector(registry=r)  # python_gc_*
        self._raise_at: dict[str, float] = {}  # set_thresholds
        self._preinitialise()

    def _preinitialise(self) -> None:
        """Export every known label value at 0, so a healthy worker shows 0, not "No data"."""
        for kind in ERROR_KINDS | {"processing_error"}:
            self.dead_letters.labels(kind)
        for topic, kind in INTERNAL_SKIPS:
            self.internal_skipped.labels(topic, kind)
        for model in KINDS:
            self.alert_outcomes.labels(model, "right")
            self.alert_outcomes.labels(model, "wrong")
            self.examples_published.labels(model, "true")
            self.examples_published.labels(model, "false")
            self.training_redelivered.labels(model)
            self.score_distribution.labels(model)
            self.scores_above_threshold.labels(model)
        churn_actions = (CHURN_ACTIONS.retention_offer, CHURN_ACTIONS.payment_reminder,
                         CHURN_ACTIONS.win_back)  # fmt: skip
        for kind, actions in (("churn", churn_actions), ("sharing", SHARING_ACTIONS)):
            for action in actions:
                self.alerts.labels(kind, action)
                for outcome in OUTCOMES:
                    self.action_outcomes.labels(kind, action, outcome)

    def set_thresholds(self, thresholds: dict[str, tuple[float, float]]) -> None:
        """Export the alert levels in effect: kind -> (raise, reset)."""
        self._raise_at = {kind: levels[0] for kind, levels in thresholds.items()}
        for kind, (raise_at, reset_at) in thresholds.items():
            self.alert_threshold.labels(kind, "raise").set(raise_at)
            self.alert_threshold.labels(kind, "reset").set(reset_at)

    def observe_score(self, kind: str, score: float) -> None:
        """A published score: its distribution, and whether it reached the alert threshold.

        >>> m = Metrics()
        >>> m.set_thresholds({"churn": (0.4, 0.3)})
        >>> for p in (0.1, 0.4, 0.9):
        ...     m.observe_score("churn", p)
        >>> m.scores_above_threshold.labels("churn")._value.get()
        2.0
        """
        self.score_distribution.labels(kind).observe(score)
        if score >= self._raise_at.get(kind, float("inf")):
            self.scores_above_threshold.labels(kind).inc()


def _versions() -> tuple[str, str, str, str]:
    def of(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "unknown"

    return of("churnwatch"), platform.python_version(), of("faust-streaming"), of("river")
