"""/openapi.json, generated: each view's request schema (`@blp.arguments`, the schema that
validates the request), response schema and example (`@blp.response`), error answers
(`@blp.alt_response`) and who may call it (`Blueprint.access`) come from the view's decorators;
plugin/schemas/api.py holds the schemas, plugin/web/examples.py the examples. Kept here is only
what cannot be generated: the security schemes, the error body and the error answers.

Requests a schema refuses are answered as every error of ours is (plugin/web/errors.py): a body
at fault 422 naming each field, a query string at fault 400, a body that is not a JSON object
400. tests/web/test_openapi.py holds every documented example to its schema and sends each
request example to the server.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import flask_smorest
from apispec import APISpec, BasePlugin
from flask import Request, Response, send_from_directory
from marshmallow import Schema, ValidationError
from swagger_ui_bundle import swagger_ui_path
from webargs.flaskparser import FlaskParser

from plugin.errors import BadRequest, Invalid, describe
from plugin.schemas.errors import field_errors

JSON = "application/json"
FHIR = "application/fhir+json"

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "apiToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token listed in THERACHARGE_API_TOKENS (`theracharge token-hash "
        "NAME` prints its entry) with a role: admin (changes tables), billing (writes charges, "
        "retries notifications), viewer (reads).",
    },
    "cdsClient": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "CDS Hooks client authentication: a JWT the EHR signs for each call "
        "(RS384 or ES384), issuer in THERACHARGE_CDS_ISSUERS, audience our public URL, a fresh "
        "`jti` (CDS Hooks 2.0 §Trusting CDS Clients). Off only with THERACHARGE_CDS_AUTH=disabled.",
    },
    "notificationSecret": {
        "type": "apiKey",
        "in": "header",
        "name": "X-TheraCharge-Secret",
        "description": "The shared secret the Subscription's channel.header carries "
        "(THERACHARGE_NOTIFICATION_SECRET).",
    },
}
TOKEN: list[dict[str, list[str]]] = [{"apiToken": []}]
CDS_CLIENT: list[dict[str, list[str]]] = [{"cdsClient": []}]
NOTIFIER: list[dict[str, list[str]]] = [{"notificationSecret": []}]
PUBLIC: list[dict[str, list[str]]] = []

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "a short code: bad-request, invalid …"},
        "message": {"type": "string", "description": "what is wrong, in words"},
        "fields": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "each field at fault and what is wrong with it",
        },
    },
}
OUTCOME_SCHEMA = {
    "type": "object",
    "description": "A FHIR R4 OperationOutcome",
    "properties": {"resourceType": {"type": "string", "enum": ["OperationOutcome"]}},
}

# The error answers, each a components.responses entry named as HTTP names its status
# (flask-smorest refers to them so): status → (description, example)
ERRORS: dict[int, tuple[str, dict[str, Any]]] = {
    400: (
        "The request is malformed: a query parameter, or a body that is not a JSON object "
        "(the message names what).",
        {"error": "bad-request", "message": "dry_run: expected true or false"},
    ),
    401: ("No valid credentials.", {"error": "unauthorized"}),
    403: (
        "The credentials' role may not do this.",
        {"error": "forbidden", "message": "this needs the admin role"},
    ),
    404: (
        "No such thing (the message names it).",
        {"error": "not-found", "message": "Encounter/123 is not on the EHR"},
    ),
    405: (
        "The path does not take this method; `Allow` names the ones it takes.",
        {"error": "method-not-allowed", "message": "The method is not allowed."},
    ),
    409: (
        "The table changed since the version named in If-Match, or the request conflicts with "
        "the current state.",
        {"error": "conflict", "message": "payers is at version 4, not 3"},
    ),
    413: (
        "The body is larger than THERACHARGE_MAX_REQUEST_BYTES.",
        {"error": "request-entity-too-large", "message": "the body is too large"},
    ),
    422: (
        "The content is not valid: every field at fault is named.",
        {
            "error": "invalid",
            "message": "fees.schedules[0].amounts.9711: not a CPT/HCPCS code",
            "fields": {"fees.schedules[0].amounts.9711": "not a CPT/HCPCS code"},
        },
    ),
    502: (
        "The EHR answered with an error or could not be reached.",
        {"error": "ehr-error", "message": "the EHR answered HTTP 503"},
    ),
    503: (
        "Our database or the EHR connection is not available; try again.",
        {"error": "unavailable", "message": "the database is unavailable; try again"},
    ),
    504: (
        "The EHR (or another run holding the billing day) did not answer within "
        "THERACHARGE_REQUEST_BUDGET_SECONDS; nothing was half-written. Try again after "
        "Retry-After.",
        {"error": "ehr-too-slow", "message": "the request's time budget ran out"},
    ),
}


class Parser(FlaskParser):
    """Requests refused as every error of ours is: named fields, our error body."""

    DEFAULT_VALIDATION_STATUS = 422

    def load_json(self, req: Request, schema: Schema) -> Any:
        body = req.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        return body

    def handle_error(
        self,
        error: ValidationError,
        req: Request,
        schema: Schema,
        *,
        error_status_code: int | None,
        error_headers: Any,
    ) -> Any:
        messages = error.messages
        if isinstance(messages, dict) and len(messages) == 1:
            (messages,) = messages.values()  # webargs files them under the location
        found = field_errors(messages)
        if error_status_code == 400:
            raise BadRequest(describe(found), found)
        raise Invalid(describe(found), found)


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]
    """flask-smorest's, refusing requests our way, with `access` for who may call."""

    ARGUMENTS_PARSER = Parser()

    def access(self, security: list[dict[str, list[str]]], *errors: int) -> Callable[[Any], Any]:
        """Who may call the view (a security requirement; [] for anyone) and the errors it
        answers with, documented from ERRORS."""

        def decorate(view: Any) -> Any:
            for status in errors:
                view = self.alt_response(status, response=HTTPStatus(status).name)(view)
            return self.doc(security=security)(view)

        return decorate


class Api(flask_smorest.Api):  # type: ignore[misc]
    """The error answers are ours (ERRORS); no catch-all `default` answer."""

    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_responses(self) -> None:
        for status, (description, example) in ERRORS.items():
            content = {"schema": {"$ref": "#/components/schemas/ErrorBody"}, "example": example}
            answer = {"description": description, "content": {JSON: content}}
            self.spec.components.response(HTTPStatus(status).name, answer, lazy=True)


class Components(BasePlugin):
    """The security schemes and the error body, in every document."""

    def init_spec(self, spec: APISpec) -> None:
        for name, scheme in SECURITY_SCHEMES.items():
            spec.components.security_scheme(name, scheme)
        spec.components.schema("ErrorBody", ERROR_SCHEMA)


def raw_body(description: str, media: str, example: Any, required: bool = True) -> dict[str, Any]:
    """A request body no schema describes (a file, a FHIR resource), for `blp.doc`."""
    schema = {"type": "string"} if isinstance(example, str) else {"type": "object"}
    content = {media: {"schema": schema, "example": example}}
    return {"requestBody": {"required": required, "description": description, "content": content}}


def asset(name: str) -> Response:
    """A file of the Swagger UI distribution the reference page loads (served by us: no CDN)."""
    return send_from_directory(str(swagger_ui_path), name, max_age=86400)
