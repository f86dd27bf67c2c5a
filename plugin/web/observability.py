"""Structured JSON logs with a request id, and Prometheus metrics. No bodies, names or tokens."""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from flask import Flask, Response, g, has_request_context, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from plugin.pipeline.metrics import child

REQUESTS = Counter("theracharge_requests_total", "HTTP requests", ["endpoint", "status"])
LATENCY = Histogram(
    "theracharge_request_seconds",
    "HTTP request latency",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


# The request id and hook instance of a call answered outside Flask's request context (the lean
# hook route, plugin.web.hook_route), for the log lines it writes.
CALL: ContextVar[tuple[str, str | None] | None] = ContextVar("theracharge_call", default=None)


# Query parameters that carry credentials, the one list: OAuth 2.0 bearer tokens (RFC 6750
# §2.3), authorization codes and their state (RFC 6749 §4.1.2), the SMART EHR launch id (SMART
# App Launch 2.x "launch"), refresh and id tokens, client secrets and assertions (RFC 7523),
# and the generic names API gateways use. Their values never reach a log line, whoever writes
# it (our loggers, gunicorn's, Werkzeug's request lines under --dev).
SECRET_QUERY_PARAMETERS = (
    "access_token",
    "code",
    "state",
    "launch",
    "refresh_token",
    "id_token",
    "client_secret",
    "client_assertion",
    "token",
    "api_key",
    "apikey",
    "password",
)
_SECRET_IN_QUERY = re.compile(
    r"(?i)([?&;](?:" + "|".join(SECRET_QUERY_PARAMETERS) + r")=)[^&;#\s\"']*"
)


def redact(text: str) -> str:
    """`text` with the value of every credential-carrying query parameter replaced."""
    if "=" not in text:
        return text
    return _SECRET_IN_QUERY.sub(r"\1[redacted]", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, hook instance; any
    credential in a URL it quotes redacted (SECRET_QUERY_PARAMETERS)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if (call := CALL.get()) is not None:
            entry["request_id"], hook = call
        elif has_request_context():
            entry["request_id"] = getattr(g, "request_id", None)
            hook = getattr(g, "hook_instance", None)
        else:
            hook = None
        if hook:
            entry["hookInstance"] = hook
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)


def count_request(endpoint: str, status: int, started: float) -> None:
    """One answered request: its count by endpoint and status, and its latency."""
    child(REQUESTS, endpoint, str(status)).inc()
    child(LATENCY, endpoint).observe(time.perf_counter() - started)


def install(app: Flask) -> None:
    @app.before_request
    def start() -> None:
        g.started = time.perf_counter()
        g.request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex

    @app.after_request
    def finish(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        count_request(endpoint, response.status_code, getattr(g, "started", time.perf_counter()))
        # An earlier before_request may have refused the request before ours ran.
        response.headers["X-Request-Id"] = g.get("request_id") or uuid.uuid4().hex
        return response


def metrics_response(work: dict[tuple[str, str], int] | None = None) -> Response:
    """Prometheus text; across gunicorn workers when PROMETHEUS_MULTIPROC_DIR is set. `work`:
    the background work in the database by kind and status (every instance and Celery worker
    records there, so these gauges are the same whichever instance is scraped)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest()
    if work is not None:
        shared = CollectorRegistry()
        shared.register(_WorkGauges(work))
        body += generate_latest(shared)
    # content_type, not mimetype: CONTENT_TYPE_LATEST carries its charset already
    return Response(body, content_type=CONTENT_TYPE_LATEST)


class _WorkGauges(Collector):
    def __init__(self, work: dict[tuple[str, str], int]) -> None:
        self.work = work

    def collect(self) -> Iterator[Metric]:
        rows = GaugeMetricFamily(
            "theracharge_work",
            "Background work in the database, by kind (notification, backfill-day) and status "
            "(pending, processing, done, failed)",
            labels=["kind", "status"],
        )
        dead = GaugeMetricFamily(
            "theracharge_dead_letters",
            "Work set aside after its retries, waiting for an admin (GET "
            "/admin/api/v1/dead-letters)",
            labels=["kind"],
        )
        for (kind, status), count in sorted(self.work.items()):
            rows.add_metric([kind, status], count)
            if status == "failed":
                dead.add_metric([kind], count)
        yield rows
        yield dead
