"""The ``churnwatch`` command line (also ``python -m streams``).

Configuration comes from environment variables (see ``churnwatch config``);
options here only choose what to run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence

from streams.logs import setup_logging
from streams.settings import Settings, SettingsError, unknown_env

log = logging.getLogger("churnwatch")


def return_large_buffers(threshold: int = 128 * 1024) -> bool:
    """Have glibc's malloc serve blocks from ``threshold`` bytes up with their own pages,
    given back to the system when freed (``mallopt(M_MMAP_THRESHOLD)``; True if set).

    By default glibc raises that threshold to the size of each such block freed (up to
    32 MiB), so after the first large message the next ones come from the heap, which
    keeps its high-water mark: 10,000 fuzzed messages with 779 of 128-512 KiB left a
    worker 115 MB larger (177 -> 292 MB); with the fixed threshold, 36 MB (176 -> 212 MB,
    most of it RocksDB's memtables: docs/operations.md, "Bad input at volume";
    ``benchmarks/badinput.py``, issue #13). Not glibc (musl, macOS): nothing to do.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, threshold))  # M_MMAP_THRESHOLD (malloc.h)
    except (OSError, AttributeError):
        return False


def tune_gc(young: int) -> None:
    """Freeze what the worker's start built (modules, Faust's app, the models) out of
    Python's cyclic garbage collector, and collect the young generation every ``young``
    new objects instead of Python's 700.

    Without it the collector kept walking the same few hundred MB of startup objects: a
    buffer of account states decoded and written moves thousands of containers through
    the generations, and every full collection walks them all (measured: docs/design.md,
    "The garbage collector"). Objects freed by reference counting (nearly all) are freed
    as before; garbage in cycles waits for up to ``young`` more objects.
    """
    import gc

    gc.collect()  # the start's own garbage first: frozen, it would never be freed
    gc.freeze()
    gc.set_threshold(young, *gc.get_threshold()[1:])


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.startprobe import StartupProbe

    return_large_buffers()
    s = Settings.from_env()
    s.require_model_key()  # the learner needs it: say so before waiting for Kafka
    s.require_pseudonym_key()  # ... and ingest this one
    setup_logging(s.log_level, s.log_format)
    # waits for the broker as long as it takes, one log line per 10 s; a refused login or
    # certificate stops here with one line, before Faust would retry it with tracebacks.
    # /healthz answers meanwhile, from before the heavy imports on (a liveness probe
    # must not restart a worker that is only waiting)
    with StartupProbe(s.web_host, s.web_port, "waiting for Kafka"):
        from streams.app import create_runtime
        from streams.faust_compat import graceful_worker
        from streams.topics import connect_admin, ensure_topics

        if s.create_topics:
            ensure_topics(s, wait_s=float("inf"))
        else:
            connect_admin(s, wait_s=float("inf")).close()
        rt = create_runtime(s)
    tune_gc(s.gc_young_threshold)

    async def before_stop() -> None:
        """Send on what ingest holds and checkpoint the learner, then Faust's own stop
        (SIGTERM, SIGINT). Shielded: a drain that takes longer than its timeout (a starved
        CPU) goes on while Faust stops (which waits for every message read to be acked);
        cancelled, it would drop events it had taken out of the merge but not sent."""
        rt.stopping = True
        try:
            await asyncio.wait_for(asyncio.shield(rt.drain()), timeout=10)
            await asyncio.wait_for(asyncio.shield(rt.checkpoint()), timeout=10)
        except Exception:  # stopping matters more than draining
            log.exception("could not drain held input or checkpoint the learner")

    worker = graceful_worker(before_stop)(
        rt.app,
        loglevel=s.log_level,
        override_logging=False,
        quiet=True,
        redirect_stdouts=False,
    )
    worker.spinner = None  # a terminal spinner: noise in container logs and JSON lines
    log.info(
        "churnwatch worker: broker %s, web :%d, %d partitions",
        s.kafka_bootstrap_servers, s.web_port, s.partitions,
    )  # fmt: skip
    worker.execute_from_commandline()  # exits the process when the worker stops
    return 0


def cmd_dev_broker(args: argparse.Namespace) -> int:
    from streams.devbroker import LocalBroker

    setup_logging("info")
    broker = LocalBroker(workdir=args.dir, port=args.port, sasl_ssl=args.sasl_ssl)
    print(f"starting a local Kafka broker (logs in {broker.workdir}) ...", file=sys.stderr)
    with broker:
        print(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}", flush=True)
        if args.sasl_ssl:  # the settings of a SASL_SSL client; the password in a file
            secret = broker.workdir / "tls" / "password"
            secret.touch(mode=0o600)
            secret.write_text(broker.password)
            print("# or, through the SASL_SSL listener:")
            for name, value in broker.client_env().items():
                if name == "CHURNWATCH_KAFKA_PASSWORD":
                    name, value = name + "_FILE", str(secret)
                print(f"{name}={value}", flush=True)
        print("broker ready; Ctrl-C stops it", file=sys.stderr)
        stop = False

        def _stop(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, _stop)
        try:
            while not stop and broker.proc is not None and broker.proc.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from streams.topics import ensure_topics, topic_specs

    s = Settings.from_env()
    setup_logging(s.log_level, s.log_format)
    created = ensure_topics(s, wait_s=args.wait)
    for name, (parts, cfg) in topic_specs(s).items():
        state = "created" if name in created else "exists"
        print(f"{name:32} {parts:3} partitions  {state}  {cfg or ''}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    s = Settings.from_env()
    for name, default in Settings().documented():
        field = name.removeprefix("CHURNWATCH_").lower()
        current = s.shown("kafka_bootstrap_servers" if name == "KAFKA_BOOTSTRAP_SERVERS" else field)
        print(f"{name:38} default={default!s:24} current={current}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="churnwatch",
        description="Real-time churn and account-sharing monitor (Kafka, Faust, River). "
        "Configuration is read from environment variables: see 'churnwatch config'.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "worker",
        help="run the stream worker (Faust)",
        description="Run the churnwatch worker: ingest, account state, scoring, alerts, "
        "learner and the HTTP endpoints. Stops gracefully on SIGTERM.",
    )
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("topics", help="create the topics churnwatch needs",
                       description="Create missing input, output and internal topics.")  # fmt: skip
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the broker")
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("config", help="show every setting, its default and current value")
    p.set_defaults(func=cmd_config)

    dev = sub.add_parser("dev", help="development tools (local broker)")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True, metavar="DEV_COMMAND")
    p = dev_sub.add_parser("broker", help="run a local single-node Kafka broker (KRaft)",
                           description="Fetch the pinned Kafka jars with Maven once (cache: "
                           "CHURNWATCH_CACHE_DIR or ~/.cache/churnwatch), then run a KRaft "
                           "broker on a loopback port until Ctrl-C.")  # fmt: skip
    p.add_argument("--port", type=int, default=None, help="listener port (default: a free one)")
    p.add_argument(
        "--dir",
        default=None,
        help="broker folder (default: a new temporary one); "
        "a folder a broker ran in before restarts it with its topics and offsets",
    )
    p.add_argument("--sasl-ssl", action="store_true",
                   help="also a SASL_SSL listener (own CA, one user with a random password; "
                   "prints the client settings)")  # fmt: skip
    p.set_defaults(func=cmd_dev_broker)

    _register_optional(sub)
    return parser


def _register_optional(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Subcommands that live in their own modules."""
    from streams import cli_accounts, cli_models, cli_sim, demo, report

    cli_sim.register(sub)
    cli_accounts.register(sub)
    cli_models.register(sub)
    report.register(sub)
    demo.register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for problem in unknown_env():
        print(f"churnwatch: warning: {problem}", file=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        print(f"churnwatch: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("CHURNWATCH_DEBUG") or not _connection_problem(exc):
            raise
        print(f"churnwatch: {_one_line(exc)}", file=sys.stderr)
        return 1


def _connection_problem(exc: Exception) -> bool:
    """Errors reaching Kafka or another service: one line for the user, not a traceback
    (kafka-python's ``KafkaError`` is no ``RuntimeError`` since its 3.0)."""
    module = type(exc).__module__.split(".")[0]
    return isinstance(exc, ConnectionError | RuntimeError) or module in {"kafka", "aiokafka"}


def _one_line(exc: Exception) -> str:
    """The error in one line, naming the broker when Kafka could not be reached."""
    name = type(exc).__name__
    text = " ".join(str(exc).split()).removeprefix(name + ": ") or name
    if type(exc).__module__.split(".")[0] in {"kafka", "aiokafka"}:
        servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", Settings().kafka_bootstrap_servers)
        return (
            f"cannot reach Kafka at KAFKA_BOOTSTRAP_SERVERS={servers} ({name}: {text}); "
            "CHURNWATCH_DEBUG=1 shows the traceback"
        )
    return text
