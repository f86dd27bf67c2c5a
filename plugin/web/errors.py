"""Errors mapped to HTTP in one place: our own (plugin/errors.py) by their status and code, the
database away as 503, anything else as 500; every body is JSON that names what is wrong (a
page's error is a page)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from plugin.deadline import RETRY_AFTER_SECONDS, OutOfTime
from plugin.errors import DataUnavailable, TheraChargeError, Unauthorized, describe
from plugin.pipeline.metrics import count_ehr_error

log = logging.getLogger(__name__)


def operation_outcome(message: str, diagnostics: str = "") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "processing",
                "details": {"text": message},
                "diagnostics": diagnostics or message,
            }
        ],
    }


def _answer(status: int, body: dict[str, Any]) -> Response:
    """The error as JSON for the APIs; as a page, in the pages' layout, for the pages."""
    if request.blueprint in ("pages", "smart"):  # pages, and the SMART launch that leads to one
        title = HTTP_STATUS_CODES.get(status, "Error")
        page = render_template("error.html", title=title, message=body.get("message") or title)
        return Response(page, status=status, mimetype="text/html")
    response = jsonify(body)
    response.status_code = status
    return response


def register(app: Flask) -> None:
    @app.errorhandler(TheraChargeError)
    def ours(error: TheraChargeError) -> Response:
        """Every error of ours, by its status and code (plugin/errors.py)."""
        if isinstance(error, Unauthorized):
            log.warning("refused an unauthenticated call: %s", error)  # the reason stays here
            return _answer(401, {"error": error.code})
        count_ehr_error(error)  # the EHR failed or was too slow: once (a run counted it first)
        if isinstance(error, DataUnavailable):  # CDS Hooks: an OperationOutcome, 412
            response = jsonify(operation_outcome(error.message, describe(error.fields)))
            response.status_code = error.http_status
            return response
        answered = _answer(error.http_status, error.body())
        if isinstance(error, OutOfTime):  # the EHR too slow for this request: try again later
            answered.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return answered

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def database_away(error: SQLAlchemyError) -> Response:
        """Our database restarting or unreachable: 503, try again (the driver's reason is
        logged; SQLAlchemy's own text quotes the statement's values)."""
        log.error("database unavailable: %s", getattr(error, "orig", None) or type(error).__name__)
        response = _answer(
            503, {"error": "unavailable", "message": "the database is unavailable; try again"}
        )
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        answered = _answer(
            error.code or 500,
            {
                "error": (error.name or "error").lower().replace(" ", "-"),
                "message": error.description or "",
            },
        )
        allowed = dict(error.get_headers()).get("Allow")
        if allowed:  # 405: the methods the path takes (RFC 9110 §15.5.6)
            answered.headers["Allow"] = allowed
        return answered

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:  # the one place a broad except is allowed
        log.exception("unexpected error")
        return _answer(
            500, {"error": "internal", "message": "an internal error; see the service log"}
        )
