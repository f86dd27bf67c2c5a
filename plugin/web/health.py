"""Liveness, readiness and metrics."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from sqlalchemy.exc import SQLAlchemyError

from plugin.gateway.errors import FhirError
from plugin.schemas import api
from plugin.web import examples
from plugin.web.api_docs import PUBLIC, Blueprint
from plugin.web.observability import metrics_response
from plugin.web.state import app_state

blp = Blueprint("health", __name__, description="Health and metrics")


@blp.route("/healthz", methods=["GET"])
@blp.doc(summary="Alive")
@blp.access(PUBLIC)
@blp.response(200, api.Health, example={"status": "ok"}, description="Alive")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@blp.route("/readyz", methods=["GET"])
@blp.doc(
    summary="Ready: settings valid, database reachable, the notification worker alive and not "
    "stuck, EHR reachable when configured"
)
@blp.access(PUBLIC)
@blp.alt_response(
    503,
    schema=api.Health,
    example={"status": "not-ready", "checks": {"settings": "ok", "database": "failed: …"}},
    description="Something it needs does not answer (named)",
)
@blp.response(200, api.Health, example=examples.READY, description="Everything it needs answers")
def readyz() -> Response:
    state = app_state()
    checks: dict[str, Any] = {"settings": "ok"}
    ready = True
    try:
        state.store.ping()
        checks["database"] = "ok"
    except SQLAlchemyError as exc:
        checks["database"] = f"failed: {type(exc).__name__}"
        ready = False
    worker = state.worker.health() if state.worker is not None else None
    checks["notification_worker"] = f"failed: {worker}" if worker else "ok"
    ready = ready and worker is None
    gatherer = state.gatherer()
    if gatherer is not None:
        try:
            gatherer.client.capabilities()
            checks["ehr"] = "ok"
        except FhirError as exc:
            checks["ehr"] = f"failed: {exc}"
            ready = False
    response = jsonify({"status": "ready" if ready else "not-ready", "checks": checks})
    response.status_code = 200 if ready else 503
    return response


@blp.route("/metrics", methods=["GET"])
@blp.doc(summary="Prometheus metrics")
@blp.access(PUBLIC)
@blp.response(
    200,
    {"type": "string"},
    example='theracharge_charge_lines_total{status="billable"} 12\n',
    content_type="text/plain",
    description="Prometheus text exposition",
)
def metrics() -> Response:
    store = app_state().store
    try:
        work = store.work_counts()
    except SQLAlchemyError:  # the database away: the process's own metrics still answer
        work = None
    return metrics_response(work)
