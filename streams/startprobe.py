"""Liveness before Faust runs: ``/healthz`` answers while the worker waits for Kafka.

A worker first waits for its broker (``streams.topics.ensure_topics``, as long as it
takes) and only then starts Faust, whose web server serves ``/healthz``. Without this
an orchestrator's liveness probe found no answer and restarted a worker that was only
waiting (issue #13). :class:`StartupProbe` serves the port from a thread meanwhile:
``/healthz`` 200, ``/readyz`` and everything else 503 with what the worker waits for.
Faust's web server takes the port over when the app starts (it starts first of the
app's services: ``streams.app.WebFirst``), so the port goes unanswered only between
the two, well under a second.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        phase, path = self.server.phase, self.path.split("?")[0]
        if path == "/healthz":
            status, doc = 200, {"status": "ok", "phase": phase}
        elif path == "/readyz":
            status, doc = 503, {"ready": False, "status": phase}
        else:
            status, doc = 503, {"error": f"the worker is starting ({phase})"}
        body = orjson.dumps(doc)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - its signature
        pass  # probes every few seconds: no log line each


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    phase = "starting"


class StartupProbe:
    """Serve ``/healthz`` on ``host:port`` until the ``with`` block ends.

    >>> import urllib.request
    >>> from streams.devbroker import free_port
    >>> port = free_port()
    >>> with StartupProbe("127.0.0.1", port, "waiting for Kafka"):
    ...     urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").read()
    b'{"status":"ok","phase":"waiting for Kafka"}'
    """

    def __init__(self, host: str, port: int, phase: str = "starting") -> None:
        self.host, self.port, self.phase = host, port, phase
        self._server: _Server | None = None

    def __enter__(self) -> StartupProbe:
        try:
            self._server = _Server((self.host, self.port), _Handler)
        except OSError:  # the port is taken: Faust will say so when it binds
            return self
        self._server.phase = self.phase
        threading.Thread(
            target=self._server.serve_forever, name="churnwatch-startprobe", daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
