"""HTTP endpoints on the worker's web port (``CHURNWATCH_WEB_PORT``, default 6066).

- ``/metrics``: Prometheus exposition of this worker's metrics; ``?name[]=<sample
  name>`` (repeatable) restricts it to those, as prometheus_client's own handler does
  (a poller that reads two counters need not have the whole page built: ~3 ms of the
  event loop);
- ``/healthz``: liveness (the process and its event loop answer). The web server
  starts first of Faust's services (``streams.app.WebFirst``), so it answers while the
  producer connects and the tables recover; before Faust starts, while the worker
  waits for Kafka, ``streams.startprobe`` answers;
- ``/readyz``: 200 once partitions are assigned and table recovery is done, else 503;
- ``/accounts/{account_id}``: the account's current state summary, features and
  scores as JSON (404 when unknown). Requests for an account owned by another
  worker are forwarded to it (Faust ``table_route``, which passes the request's
  headers on, so the token too);
- ``/quality``: the model-quality part of ``churnwatch report`` (HTML, inline SVG),
  drawn from the learner's recent prequential scores (``rt.quality``). Only the worker
  that holds the training partition runs the learner: the others answer 404 saying so
  (there is no routing to it, as there is for accounts). 501 without matplotlib.

``/accounts/*`` is personal data and ``/quality`` is business data: both need
``Authorization: Bearer <token>`` with the token of ``CHURNWATCH_API_TOKEN``
(compared in constant time); without a token configured they answer loopback
clients only, and say so to the others. The
other three stay open (Prometheus and orchestrators probe them). Faust's own
``/table``, ``/router``, ``/graph`` and statistics pages are off (``create_app``).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from typing import Any
from urllib.parse import parse_qs

import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streams.report import render_live
from streams.runtime import Runtime

# aiohttp wants the charset out of content_type (it adds utf-8 itself)
EXPOSITION_TYPE = CONTENT_TYPE_LATEST.split(";")[0] + "; version=0.0.4"


def exposition(registry: CollectorRegistry, query_string: str) -> bytes:
    """The /metrics page of ``registry``: every sample, or only the sample names that the
    query's ``name[]`` parameters ask for (as prometheus_client's own handler does)."""
    names = parse_qs(query_string).get("name[]")
    return generate_latest(registry.restricted_registry(names) if names else registry)


def is_ready(app: Any) -> tuple[bool, str]:
    try:
        return _is_ready(app)
    except Exception:  # noqa: BLE001 - the web server starts first: no consumer yet
        return False, "starting"


def _is_ready(app: Any) -> tuple[bool, str]:
    if app.rebalancing:
        return False, "rebalancing"
    if not app.tables.recovery.completed.is_set():
        return False, "recovering state"
    if not app.consumer.assignment():
        return False, "no partitions assigned"
    return True, "ready"


def refusal(request: Request, token: str) -> tuple[int, str] | None:
    """Why ``request`` may not read account data as ``(status, message)``, None if it may.

    With a token: the request must carry it as a bearer token. Without one: only a
    loopback client may ask (a reverse proxy on the same host counts as one: set a token).
    """
    if token:
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(value.encode(), token.encode()):
            return None
        return 401, "a bearer token is required (Authorization: Bearer <CHURNWATCH_API_TOKEN>)"
    if _is_loopback(request.remote):
        return None
    return 403, (
        "no CHURNWATCH_API_TOKEN is configured on this worker, so /accounts/* and /quality "
        "answer only clients on this host"
    )


def no_matplotlib() -> str | None:
    """Why ``/quality`` cannot be drawn here, None if it can (matplotlib is a runtime
    dependency of the image; a hand-made install may lack it)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "/quality needs matplotlib, which is not installed: pip install matplotlib"
    return None


def holds_training(app: Any, training_topic: str) -> bool:
    """True if this worker holds the training partition, so runs the learner."""
    try:
        return any(tp.topic == training_topic for tp in app.consumer.assignment())
    except Exception:  # noqa: BLE001 - not started yet (no consumer)
        return False


def _is_loopback(address: str | None) -> bool:
    """
    >>> _is_loopback("127.0.0.1"), _is_loopback("::1"), _is_loopback("10.0.0.2"), _is_loopback(None)
    (True, True, False, False)
    """
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def ready_now(app: Any) -> bool:
    """``is_ready`` for a scrape."""
    return is_ready(app)[0]


def register(rt: Runtime) -> None:
    app, metrics = rt.app, rt.metrics
    token = rt.settings.api_token
    table = rt.accounts_table
    lookup = rt.lookup
    cfg = rt.settings.engine_config()
    metrics.set_thresholds(
        {
            "churn": (cfg.churn_alert.threshold, cfg.churn_alert.reset),
            "sharing": (cfg.sharing_alert.threshold, cfg.sharing_alert.reset),
        }
    )
    metrics.ready.set_function(lambda: float(ready_now(app)))

    @app.page("/metrics")
    async def prometheus_metrics(web: View, request: Request) -> Response:
        page = exposition(metrics.registry, request.query_string)
        return web.bytes(page, content_type=EXPOSITION_TYPE)

    @app.page("/healthz")
    async def healthz(web: View, request: Request) -> Response:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: View, request: Request) -> Response:
        ready, why = is_ready(app)
        return web.json({"ready": ready, "status": why}, status=200 if ready else 503)

    def refused(web: View, request: Request) -> Response | None:
        why = refusal(request, token)
        if why is None:
            return None
        status, message = why
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return web.json({"error": message}, status=status, headers=headers)

    drawing = asyncio.Lock()  # one page drawn at a time (a few seconds of CPU)

    @app.page("/quality")
    async def quality(web: View, request: Request) -> Response:
        no = refused(web, request)
        if no is not None:
            return no
        if not holds_training(app, rt.settings.training_topic):
            return web.json(
                {"error": "the learner runs on another worker: ask the one that holds "
                 f"partition 0 of {rt.settings.training_topic!r} (its /quality page), "
                 "or draw the same plots from recorded events with 'churnwatch report'"},
                status=404,
            )  # fmt: skip
        missing = no_matplotlib()
        if missing is not None:
            return web.json({"error": missing}, status=501)
        window = rt.quality
        scored = window.scored()  # a copy: the learner goes on adding while it is drawn
        async with drawing:  # drawn off the event loop: the agents keep running
            page = await asyncio.to_thread(render_live, scored, cfg, window.started_ms)
        return web.html(page)

    @app.page("/accounts/{account_id}")
    class AccountView(View):
        async def get(self, request: Request, account_id: str) -> Response:
            no = refused(self, request)  # before anything is forwarded or looked up
            if no is not None:
                return no
            return await self.owned(request, account_id=account_id)

        @app.table_route(table=table, match_info="account_id")
        async def owned(self, request: Request, account_id: str) -> Response:
            doc = lookup(account_id)
            if doc is None:
                return self.json({"error": f"unknown account {account_id!r}"}, status=404)
            return self.bytes(orjson.dumps(doc), content_type="application/json")
