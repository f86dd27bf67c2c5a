"""Typed errors mapped to HTTP in one place; every error body is JSON that names what is wrong."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from fhir_mappings.assemble import InvalidResource
from plugin.errors import VisitTooLarge
from plugin.gateway.errors import FhirError, TemporaryFhirError
from plugin.gateway.gather import NotFound
from plugin.web.cds_auth import Unauthorized
from plugin.web.observability import EHR_ERRORS

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answer: the HTTP status, a short code and a message naming what is wrong."""

    status = 400
    code = "bad-request"

    def __init__(self, message: str, fields: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class BadRequest(ApiError):
    status, code = 400, "bad-request"


class NotFoundError(ApiError):
    status, code = 404, "not-found"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class Unprocessable(ApiError):
    status, code = 422, "invalid"


class ServiceUnavailable(ApiError):
    status, code = 503, "unavailable"


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
    if request.blueprint == "pages":
        title = HTTP_STATUS_CODES.get(status, "Error")
        page = render_template("error.html", title=title, message=body.get("message") or title)
        return Response(page, status=status, mimetype="text/html")
    response = jsonify(body)
    response.status_code = status
    return response


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> Response:
        body: dict[str, Any] = {"error": error.code, "message": error.message}
        if error.fields:
            body["fields"] = error.fields
        return _answer(error.status, body)

    @app.errorhandler(Unauthorized)
    def unauthorized(error: Unauthorized) -> Response:
        log.warning("refused an unauthenticated call: %s", error)  # the reason stays here
        return _answer(401, {"error": "unauthorized"})

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

    @app.errorhandler(InvalidResource)
    def invalid_resource(error: InvalidResource) -> Response:
        return _answer(
            422, {"error": "invalid", "message": str(error), "fields": {error.key: str(error)}}
        )

    @app.errorhandler(VisitTooLarge)
    def too_large(error: VisitTooLarge) -> Response:
        return _answer(422, {"error": "invalid", "message": f"{error.encounter}: {error}"})

    @app.errorhandler(NotFound)
    def not_found(error: NotFound) -> Response:
        return _answer(404, {"error": "not-found", "message": str(error)})

    @app.errorhandler(FhirError)
    def upstream(error: FhirError) -> Response:
        """The EHR failed: 502 with its OperationOutcome text (never a token or a body)."""
        kind = "temporary" if isinstance(error, TemporaryFhirError) else "fatal"
        EHR_ERRORS.labels(kind).inc()
        return _answer(502, {"error": "ehr-error", "message": str(error)})

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        return _answer(
            error.code or 500,
            {
                "error": (error.name or "error").lower().replace(" ", "-"),
                "message": error.description or "",
            },
        )

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:  # the one place a broad except is allowed
        log.exception("unexpected error")
        return _answer(
            500, {"error": "internal", "message": "an internal error; see the service log"}
        )
