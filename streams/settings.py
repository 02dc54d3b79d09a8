"""One typed, frozen settings object, read from the environment at the edge.

Every knob has a documented default (README "Configuration"); a bad value fails
fast with a message that names the variable. Nothing here is read at import
time: call :meth:`Settings.from_env` where the process starts.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from models.engine import EngineConfig


# CHURNWATCH_* variables read outside ``Settings``: the dev broker's jar cache, full
# tracebacks from the CLI, ./dev's virtualenv, the compose file's image tag, the build's
# compiled core (setup.py)
OTHER_ENV = frozenset(
    {"CHURNWATCH_CACHE_DIR", "CHURNWATCH_DEBUG", "CHURNWATCH_VENV", "CHURNWATCH_IMAGE",
     "CHURNWATCH_MYPYC"}
)  # fmt: skip


class SettingsError(ValueError):
    """A configuration value is missing or invalid."""


def _bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true/false, got {raw!r}")


PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
MIN_SECRET_CHARS = 16


def _read_secret(name: str, env: Mapping[str, str]) -> str:
    """The secret in the file named by ``{name}_FILE`` (one trailing newline dropped)."""
    if env.get(name):
        raise SettingsError(f"set {name} or {name}_FILE, not both")
    path = env[name + "_FILE"]
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SettingsError(f"{name}_FILE: cannot read {path!r} ({exc.strerror})") from None
    return text.removesuffix("\n").removesuffix("\r")


def _env_value(name: str, env: Mapping[str, str], secret: bool) -> str | None:
    """The value of ``name`` (a secret: or of the file ``name_FILE`` names); None if unset."""
    if secret and env.get(name + "_FILE"):
        return _read_secret(name, env)
    return env.get(name) or None


@dataclass(frozen=True, slots=True)
class Settings:
    """churnwatch configuration. Field ``x`` is read from ``CHURNWATCH_X``
    unless ``_ENV_NAMES`` says otherwise."""

    kafka_bootstrap_servers: str = "localhost:9092"
    app_id: str = "churnwatch"
    data_dir: str = ".churnwatch-data"
    # where account state lives: rocksdb (on disk under data_dir, restarts replay only the
    # changelog tail) or memory (every restart replays the whole changelog)
    store: str = "rocksdb"
    # decoded account states kept in memory per worker (an LRU of hot accounts); the rest
    # are read from the store when needed. Translated to a number of accounts with
    # models.engine.RESIDENT_BYTES_PER_ACCOUNT (measured: benchmarks/bench_store.py)
    state_cache_mb: int = 1024
    # Python's garbage collector in the worker: what the start built is frozen out of it,
    # and the young generation is collected every this many new objects (Python: 700)
    gc_young_threshold: int = 50_000
    web_host: str = "0.0.0.0"
    web_port: int = 6066
    log_level: str = "info"
    log_format: str = "text"  # text | json

    # Topics (contract defaults)
    subscription_topic: str = "subscription-events"
    usage_topic: str = "usage-events"
    dead_letter_topic: str = "churnwatch-dead-letter"
    scores_topic: str = "risk-scores"
    alerts_topic: str = "risk-alerts"
    training_topic: str = "churnwatch-training"
    account_events_topic: str = "churnwatch-account-events"
    partitions: int = 8
    replication_factor: int = 1
    create_topics: bool = True

    # Input rules
    max_message_bytes: int = 1_048_576
    allowed_lateness_s: float = 3600.0
    session_expiry_s: float = 4 * 3600.0
    # an input partition silent this long (wall clock) stops holding back the others
    input_idle_s: float = 3.0
    # ... or this long once it is caught up (its end of log reached: nothing more on the
    # way), so the end of a burst is not held for the whole idle time (issue #12). Off by
    # default (= the idle time): at 0.3 s a producer pumping a backlog while the worker
    # reads it had events dropped as late (docs/design.md, "Where a worker waits")
    input_quiet_s: float = 3.0
    # ... unless Kafka holds more of it (the consumer is busy, not the source quiet):
    # then it stops holding them back only after this long
    input_stall_s: float = 60.0
    # a caught-up input partition whose newest event is less than this behind the wall
    # clock is a live stream: it holds the others back only up to the wall clock (a
    # backlog's old event times are never live); at most the allowed lateness, 0: off
    # (docs/design.md, "Live input")
    input_live_s: float = 60.0
    # an event more than this ahead of the wall clock or of the input merged in event time
    # is bad input (dead letter future_ts), and so is one before the floor (past_ts); the
    # floor is RFC 3339 or epoch milliseconds
    max_future_skew_s: float = 86_400.0
    min_event_ts: str = "2000-01-01T00:00:00Z"

    # Batching (internal topics carry JSON arrays of events)
    ingest_batch_max: int = 1000
    # the account agent's longest wait to fill a buffer: the ingest sends every 0.2 s, so a
    # wait of 0.1 s after its messages came was mostly idle latency (docs/design.md)
    ingest_batch_within_s: float = 0.02

    # Scoring and alerting
    churn_horizon_days: float = 30.0
    score_delta: float = 0.02
    # churn scores are calibrated probabilities of cancelling within the horizon: 0.4 is
    # about 4x the base rate of a typical service (see README, "Choosing thresholds")
    churn_threshold: float = 0.4
    churn_reset: float = 0.3
    # churn alerts are decided after each subscription event and at every multiple of
    # this much event time (UTC midnights), so a replay gives the same alerts
    churn_decision_interval_h: float = 24.0
    # sharing scores are calibrated too (models.sharing.CALIBRATION): 0.932 and 0.842 are
    # where the score before calibration alerted, at 0.7 and 0.5
    sharing_threshold: float = 0.932
    sharing_reset: float = 0.842
    # builtin: the map fitted on the simulator's matrix; off: the blend of prior and model
    # as it is (set the levels on that scale); else a JSON file of [score, probability]
    # knots from 0 to 1, both increasing (fitted on your own verified labels)
    sharing_calibration: str = "builtin"
    # each alert's account is followed this long (event time) to count what the action
    # achieved (churnwatch_action_outcomes_total)
    action_window_days: float = 30.0
    # false: serve the model snapshots as they are (imported or last learned), learn nothing
    learn: bool = True
    # the learner writes model snapshots this often; a training example is committed only
    # once a snapshot holds it
    model_snapshot_s: float = 2.0

    # Kafka consumer group timing (see DESIGN.md: the first join waits ~half the session timeout)
    session_timeout_s: float = 10.0
    heartbeat_interval_s: float = 3.0
    rebalance_timeout_s: float = 20.0
    # Faust's consumer loop hands a message to the streams without four new asyncio tasks
    # when nothing blocks (streams.faust_compat.deliver_without_tasks; false: Faust's own)
    deliver_without_tasks: bool = True
    # a table recovery that reads nothing from a changelog partition this long is
    # started again (streams.agents.recovery); 0: never
    recovery_stall_s: float = 30.0
    producer_linger_ms: int = 5

    # Kafka security (streams.kafka_security applies them to every client)
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    kafka_username: str = ""
    kafka_password: str = field(default="", repr=False)  # secret: also CHURNWATCH_..._FILE
    kafka_ca_file: str = ""  # PEM; empty: the system's trusted CAs
    kafka_cert_file: str = ""  # PEM client certificate (mutual TLS)
    kafka_key_file: str = ""  # PEM private key of the client certificate
    kafka_check_hostname: bool = True

    # model snapshots are loaded only when signed with this key (HMAC-SHA256)
    model_key: str = field(default="", repr=False)
    # bearer token of /accounts/* and /quality; empty: only loopback clients may ask
    api_token: str = field(default="", repr=False)
    # device ids, profile ids, member ids and IP prefixes become keyed tokens (HMAC-SHA256)
    # with it at ingest (models.privacy); required by the worker
    pseudonym_key: str = field(default="", repr=False)
    # ... and coordinates are coarsened to the centres of cells of this side (km; 0: kept
    # as sent) at ingest (models.privacy.coarsen)
    geo_grid_km: float = 1.0

    _ENV_NAMES = {"kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS"}
    # other variables a setting is read from too: the name issue #14 gave the pseudonym key
    # (set one of them, or both to the same value)
    ALIASES = {"pseudonym_key": ("CHURNWATCH_HASH_KEY",)}
    # read from VAR or from the file named by VAR_FILE; never printed or logged
    SECRETS = frozenset({"kafka_password", "model_key", "api_token", "pseudonym_key"})

    @staticmethod
    def env_name(field_name: str) -> str:
        return Settings._ENV_NAMES.get(field_name, "CHURNWATCH_" + field_name.upper())

    @staticmethod
    def env_names(field_name: str) -> tuple[str, ...]:
        """The variable of a setting, then its aliases."""
        return (Settings.env_name(field_name), *Settings.ALIASES.get(field_name, ()))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``env`` (default ``os.environ``); ``overrides`` win.

        >>> Settings.from_env({"CHURNWATCH_PARTITIONS": "4"}).partitions
        4
        >>> Settings.from_env({"CHURNWATCH_PARTITIONS": "0"})
        Traceback (most recent call last):
        ...
        streams.settings.SettingsError: CHURNWATCH_PARTITIONS must be >= 1
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            secret = f.name in cls.SECRETS
            names = cls.env_names(f.name)
            given = {n: v for n in names if (v := _env_value(n, env, secret)) is not None}
            if len(set(given.values())) > 1:
                raise SettingsError(f"{' and '.join(given)} are set and differ: set one")
            if not given:
                continue
            name, raw = next(iter(given.items()))
            if secret:
                values[f.name] = raw
                continue
            parse: Callable[[str], Any] = {int: int, float: float, bool: _bool}.get(
                type(f.default), str
            )
            try:
                values[f.name] = parse(raw)
            except ValueError as exc:
                raise SettingsError(f"{name}: {exc}") from None
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        problems = []
        if not self.kafka_bootstrap_servers.strip():
            problems.append("KAFKA_BOOTSTRAP_SERVERS is empty")
        for name in (
            "partitions", "replication_factor", "max_message_bytes", "ingest_batch_max",
            "state_cache_mb", "gc_young_threshold",
        ):  # fmt: skip
            if getattr(self, name) < 1:
                problems.append(f"{self.env_name(name)} must be >= 1")
        if not 0 < self.web_port < 65536:
            problems.append(f"{self.env_name('web_port')} must be a TCP port")
        for name in (
            "allowed_lateness_s",
            "session_expiry_s",
            "churn_horizon_days",
            "action_window_days",
            "input_idle_s",
            "input_quiet_s",
            "input_stall_s",
            "churn_decision_interval_h",
            "model_snapshot_s",
            "max_future_skew_s",
        ):
            if getattr(self, name) <= 0:
                problems.append(f"{self.env_name(name)} must be > 0")
        if not 0 <= self.input_live_s <= self.allowed_lateness_s:
            problems.append(
                f"{self.env_name('input_live_s')} must be in [0, "
                f"{self.env_name('allowed_lateness_s')}] (seconds; 0: off)"
            )
        if not 0 <= self.geo_grid_km <= 100:
            problems.append(f"{self.env_name('geo_grid_km')} must be in [0, 100] (km; 0: off)")
        try:
            _ = self.min_event_ms
        except ValueError as exc:
            problems.append(f"{self.env_name('min_event_ts')}: {exc}")
        for kind in ("churn", "sharing"):
            thr, reset = getattr(self, f"{kind}_threshold"), getattr(self, f"{kind}_reset")
            if not 0 <= reset < thr <= 1:
                problems.append(
                    f"need 0 <= CHURNWATCH_{kind.upper()}_RESET < "
                    f"CHURNWATCH_{kind.upper()}_THRESHOLD <= 1"
                )
        try:
            _ = self.sharing_calibration_table
        except ValueError as exc:
            problems.append(f"{self.env_name('sharing_calibration')}: {exc}")
        if self.store not in {"rocksdb", "memory"}:
            problems.append("CHURNWATCH_STORE must be rocksdb or memory")
        if self.log_format not in {"text", "json"}:
            problems.append("CHURNWATCH_LOG_FORMAT must be text or json")
        if self.log_level.lower() not in {"debug", "info", "warn", "warning", "error", "critical"}:
            problems.append("CHURNWATCH_LOG_LEVEL must be debug, info, warn, error or critical")
        if self.heartbeat_interval_s * 3 > self.session_timeout_s:
            problems.append(
                "CHURNWATCH_HEARTBEAT_INTERVAL_S must be under a third of the session timeout"
            )
        problems += self._security_problems()
        if problems:
            raise SettingsError("; ".join(problems))

    def _security_problems(self) -> list[str]:
        problems = []
        protocol, name = self.kafka_security_protocol, self.env_name
        if protocol not in PROTOCOLS:
            problems.append(
                f"{name('kafka_security_protocol')} must be one of {', '.join(PROTOCOLS)}"
            )
        if self.kafka_sasl_mechanism not in MECHANISMS:
            problems.append(
                f"{name('kafka_sasl_mechanism')} must be one of {', '.join(MECHANISMS)}"
            )
        if protocol.startswith("SASL_") and not (self.kafka_username and self.kafka_password):
            problems.append(
                f"{protocol} needs {name('kafka_username')} and {name('kafka_password')} "
                f"(or {name('kafka_password')}_FILE)"
            )
        for f in ("kafka_ca_file", "kafka_cert_file", "kafka_key_file"):
            path = getattr(self, f)
            if path and not protocol.endswith("SSL"):
                problems.append(
                    f"{name(f)} is set but {name('kafka_security_protocol')} is {protocol}"
                )
            elif path and not os.path.isfile(path):
                problems.append(f"{name(f)}: no such file {path!r}")
        if self.kafka_key_file and not self.kafka_cert_file:
            problems.append(f"{name('kafka_key_file')} needs {name('kafka_cert_file')}")
        for f in ("model_key", "api_token", "pseudonym_key"):
            if getattr(self, f) and len(getattr(self, f)) < MIN_SECRET_CHARS:
                names = " or ".join(self.env_names(f))
                problems.append(f"{names} must be at least {MIN_SECRET_CHARS} characters")
        return problems

    def shown(self, field_name: str) -> str:
        """A setting's value as ``churnwatch config`` prints it: secrets only as set or not.

        >>> s = Settings(model_key="k" * 32)
        >>> s.shown("model_key"), s.shown("api_token"), s.shown("partitions")
        ('<set>', '', '8')
        """
        value = getattr(self, field_name)
        if field_name in self.SECRETS:
            return "<set>" if value else ""
        return str(value)

    def require_model_key(self) -> bytes:
        """The model snapshot key, or SettingsError saying why it is needed."""
        if not self.model_key:
            raise SettingsError(
                f"{self.env_name('model_key')} is not set: model snapshots and bundles are "
                "loaded only when signed with it (docs/operations.md, Security); set the same "
                "secret of 32+ random characters (e.g. 'openssl rand -hex 32') for every worker "
                "and every 'churnwatch models' command"
            )
        return self.model_key.encode()

    def require_pseudonym_key(self) -> bytes:
        """The key of the identifiers' tokens, or SettingsError saying why it is needed."""
        if not self.pseudonym_key:
            raise SettingsError(
                f"{self.env_name('pseudonym_key')} (or its alias CHURNWATCH_HASH_KEY) is not "
                "set: device ids, profile ids and IP "
                "addresses are replaced at ingest by keyed tokens made with it, so no raw "
                "identifier is stored or forwarded (docs/security.md); set the same secret of "
                "32+ random characters (e.g. 'openssl rand -hex 32') for every worker, and "
                "keep it: a new key gives new tokens"
            )
        return self.pseudonym_key.encode()

    @property
    def min_event_ms(self) -> int:
        """The floor of accepted event times (``min_event_ts``) in epoch ms.

        >>> Settings(min_event_ts="1262304000000").min_event_ms, Settings().min_event_ms
        (1262304000000, 946684800000)
        """
        from models.contract import parse_ts

        raw = self.min_event_ts.strip()
        return parse_ts(int(raw) if raw.isdigit() else raw)

    @property
    def input_topics(self) -> tuple[str, str]:
        return (self.subscription_topic, self.usage_topic)

    @property
    def models_topic(self) -> str:
        """The ``models`` table's changelog: model snapshots, compacted, key = model kind.

        Named like every Faust table changelog (``{app_id}-{table}-changelog``);
        ``churnwatch models export`` / ``import`` read and write it.
        """
        return f"{self.app_id}-models-changelog"

    @property
    def state_dir(self) -> Path:
        return Path(self.data_dir)

    @property
    def state_cache_accounts(self) -> int:
        """How many decoded account states the worker keeps in memory.

        >>> Settings(state_cache_mb=1024).state_cache_accounts
        16384
        """
        from models.engine import RESIDENT_BYTES_PER_ACCOUNT

        return max(1, self.state_cache_mb * 2**20 // RESIDENT_BYTES_PER_ACCOUNT)

    @property
    def sharing_calibration_table(self) -> tuple[tuple[float, float], ...]:
        """The knots of ``CHURNWATCH_SHARING_CALIBRATION`` (empty: off); ValueError if
        its file cannot be read or is no calibration (``models.sharing.check_calibration``).

        >>> len(Settings().sharing_calibration_table) > 2
        True
        >>> Settings(sharing_calibration="off").sharing_calibration_table
        ()
        >>> Settings(sharing_calibration="/nonexistent.json").sharing_calibration_table
        Traceback (most recent call last):
        ...
        ValueError: cannot read /nonexistent.json: No such file or directory
        """
        from models.sharing import CALIBRATION

        if self.sharing_calibration == "builtin":
            return CALIBRATION
        if self.sharing_calibration == "off":
            return ()
        return _calibration_file(self.sharing_calibration)

    def engine_config(self) -> EngineConfig:
        """The engine's rules as configured (the worker's, and ``churnwatch models train``'s)."""
        from models.account import DAY_MS, StateConfig
        from models.alerting import AlertConfig
        from models.engine import EngineConfig
        from models.timepolicy import TimePolicy

        return EngineConfig(
            state=StateConfig(
                lateness_ms=int(self.allowed_lateness_s * 1000),
                session_expiry_ms=int(self.session_expiry_s * 1000),
                horizon_ms=int(self.churn_horizon_days * DAY_MS),
            ),
            churn_alert=AlertConfig(self.churn_threshold, self.churn_reset),
            churn_decision_interval_ms=int(self.churn_decision_interval_h * 3_600_000),
            sharing_alert=AlertConfig(self.sharing_threshold, self.sharing_reset),
            sharing_calibration=self.sharing_calibration_table,
            score_delta=self.score_delta,
            action_window_ms=int(self.action_window_days * DAY_MS),
            time=TimePolicy(int(self.max_future_skew_s * 1000), self.min_event_ms),
            geo_grid_km=self.geo_grid_km,
        )

    def documented(self) -> list[tuple[str, str]]:
        """(environment variable, default) for every setting, for the README and ``--help``."""
        return [(self.env_name(f.name), str(f.default)) for f in fields(self)]


@functools.lru_cache(maxsize=4)
def _calibration_file(name: str) -> tuple[tuple[float, float], ...]:
    """The knots of a calibration file, read once per process (validated settings and
    every agent's engine rules see the same table)."""
    from models.sharing import check_calibration

    path = Path(name)
    try:
        knots = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    return check_calibration(knots)


def unknown_env(env: Mapping[str, str] | None = None) -> list[str]:
    """``CHURNWATCH_*`` variables nothing reads (a typo is otherwise silently ignored),
    each with the closest known name.

    >>> unknown_env({"CHURNWATCH_PARTITION": "4", "CHURNWATCH_PARTITIONS": "4", "HOME": "/"})
    ['CHURNWATCH_PARTITION is not a churnwatch setting (did you mean CHURNWATCH_PARTITIONS?)']
    >>> unknown_env({"CHURNWATCH_MODEL_KEY_FILE": "/run/secrets/model_key"})
    []
    """
    env = os.environ if env is None else env
    known = {n for f in fields(Settings) for n in Settings.env_names(f.name)} | OTHER_ENV
    for secret in Settings.SECRETS:
        known |= {n + "_FILE" for n in Settings.env_names(secret)}
    problems = []
    for name in sorted(n for n in env if n.startswith("CHURNWATCH_") and n not in known):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else " (see 'churnwatch config')"
        problems.append(f"{name} is not a churnwatch setting{hint}")
    return problems
