"""A Faust app for tests/integration/test_faust_commit_cap.py (run as a script, not a test).

``python -m tests.integration.faust_probe BOOTSTRAP TOPIC GROUP HOLD stock|patched DATADIR``
reads TOPIC with the worker's Faust settings (``streams.app.create_app``) in a stream
that acknowledges each message itself, except offset HOLD of partition 0, which it
keeps in flight forever (as the ingest merge holds a message). It prints
``seen PARTITION OFFSET`` per message. ``stock`` undoes the commit patch
(``faust_compat.never_commit_past_in_flight``) to show what Faust does without it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def main(bootstrap: str, topic: str, group: str, hold: int, mode: str, datadir: str) -> None:
    import faust
    from faust.transport.consumer import Consumer

    from streams.app import create_app
    from streams.devbroker import free_port
    from streams.settings import Settings

    s = Settings(kafka_bootstrap_servers=bootstrap, app_id=group, data_dir=datadir,
                 web_port=free_port(), session_timeout_s=6, heartbeat_interval_s=1.5,
                 rebalance_timeout_s=10, log_level="warning")  # fmt: skip
    app = create_app(s)
    if mode == "stock":
        Consumer._new_offset = Consumer._new_offset.__wrapped__
    held: list[Any] = []

    @app.agent(app.topic(topic, key_type=bytes, value_type=bytes, value_serializer="raw"))
    async def probe(stream: Any) -> None:
        async for event in stream.noack().events():
            msg = event.message
            if (msg.partition, msg.offset) == (0, hold):
                held.append(event)  # in flight: never acknowledged
            else:
                await stream.ack(event)
            print(f"seen {msg.partition} {msg.offset}", flush=True)  # noqa: T201

    Path(datadir).mkdir(parents=True, exist_ok=True)
    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    b, t, g, h, m, d = sys.argv[1:7]
    main(b, t, g, int(h), m, d)
