"""HTTP endpoints on the worker's web port (``CHURNWATCH_WEB_PORT``, default 6066).

- ``/metrics``: Prometheus exposition of this worker's metrics;
- ``/healthz``: liveness (the process and its event loop answer);
- ``/readyz``: 200 once partitions are assigned and table recovery is done, else 503;
- ``/accounts/{account_id}``: the account's current state summary, features and
  scores as JSON (404 when unknown). Requests for an account owned by another
  worker are forwarded to it (Faust ``table_route``).
"""

from __future__ import annotations

from typing import Any

import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.runtime import Runtime

# aiohttp wants the charset out of content_type (it adds utf-8 itself)
EXPOSITION_TYPE = CONTENT_TYPE_LATEST.split(";")[0] + "; version=0.0.4"


def is_ready(app: Any) -> tuple[bool, str]:
    if app.rebalancing:
        return False, "rebalancing"
    if not app.tables.recovery.completed.is_set():
        return False, "recovering state"
    if not app.consumer.assignment():
        return False, "no partitions assigned"
    return True, "ready"


def register(rt: Runtime) -> None:
    app, metrics = rt.app, rt.metrics
    table = rt.accounts_table
    lookup = rt.lookup

    @app.page("/metrics")
    async def prometheus_metrics(web: View, request: Request) -> Response:
        return web.bytes(generate_latest(metrics.registry), content_type=EXPOSITION_TYPE)

    @app.page("/healthz")
    async def healthz(web: View, request: Request) -> Response:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: View, request: Request) -> Response:
        ready, why = is_ready(app)
        return web.json({"ready": ready, "status": why}, status=200 if ready else 503)

    @app.page("/accounts/{account_id}")
    class AccountView(View):
        @app.table_route(table=table, match_info="account_id")
        async def get(self, request: Request, account_id: str) -> Response:
            doc = lookup(account_id)
            if doc is None:
                return self.json({"error": f"unknown account {account_id!r}"}, status=404)
            return self.bytes(orjson.dumps(doc), content_type="application/json")
