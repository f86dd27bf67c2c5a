"""CDS Hooks 2.0: discovery, the therapy-charges service on encounter-discharge, feedback."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Response, g, jsonify, request
from marshmallow import ValidationError

from plugin.deadline import budget
from plugin.errors import BadRequest, NotFoundError, describe
from plugin.pipeline.hooks import SERVICE_ID, HookRequest, discovery, handle_discharge
from plugin.schemas import api
from plugin.schemas.cds import FeedbackSchema, HookRequestSchema, plain_hook_request
from plugin.schemas.errors import field_errors
from plugin.web import examples
from plugin.web.api_docs import CDS_CLIENT, JSON, OUTCOME_SCHEMA, PUBLIC, Blueprint
from plugin.web.state import app_state

blp = Blueprint("cds", __name__, url_prefix="/cds-services", description="CDS Hooks 2.0")
# Built once: a marshmallow schema is reusable, and building one costs more than a load.
HOOK_REQUEST = HookRequestSchema()
FEEDBACK = FeedbackSchema()


@blp.route("", methods=["GET"])
@blp.doc(summary="Discovery: the services and their prefetch templates")
@blp.access(PUBLIC)
@blp.response(200, api.Discovery, example=examples.DISCOVERY, description="CDS Hooks 2.0")
def services() -> Response:
    return jsonify(discovery())


def _body(schema: Any) -> dict[str, Any]:
    raw = request.get_json(silent=True)
    if not isinstance(raw, dict):
        raise BadRequest("the body must be a JSON object")
    if schema is HOOK_REQUEST and (plain := plain_hook_request(raw)) is not None:
        return plain  # the common call, checked by hand; anything else by the schema
    try:
        loaded: dict[str, Any] = schema.load(raw)
    except ValidationError as exc:
        fields = field_errors(exc.messages)
        raise BadRequest(describe(fields), fields) from exc
    return loaded


def _trusted(service_id: str) -> None:
    """The call names our service and carries a valid CDS Client JWT (aud: the exact URL)."""
    if service_id != SERVICE_ID:
        raise NotFoundError(f"no CDS service {service_id!r}")
    verifier = app_state().cds_verifier
    if verifier is None:
        return
    public = app_state().settings.service.public_url
    audience = f"{public}{request.path}" if public else request.base_url
    verifier.verify(request.headers.get("Authorization"), audience)


@blp.route("/<service_id>", methods=["POST"])
@blp.doc(
    summary="Call a CDS service (therapy-charges on encounter-discharge)",
    # validated by the same schema (plugin.web.cds_hooks._body; the plain call by hand, held
    # to the schema's answers by tests/web/test_cds_hooks.py)
    requestBody={
        "required": True,
        "description": "A CDS Hooks request: hook, hookInstance, context, prefetch",
        "content": {JSON: {"schema": HookRequestSchema, "example": examples.HOOK_REQUEST}},
    },
)
@blp.access(CDS_CLIENT, 400, 401, 404, 413, 502)
@blp.alt_response(
    412,
    description="The prefetch lacks what the decision needs and there is no EHR to read it "
    "from (CDS Hooks: an OperationOutcome)",
    schema=OUTCOME_SCHEMA,
)
@blp.response(200, api.Cards, example=examples.CARDS, description="Cards and systemActions")
def call(service_id: str) -> Response:
    """Every call the lean route (plugin.web.hook_route) leaves to Flask: another service id,
    a body the schema must load or refuse, any error."""
    _trusted(service_id)
    data = _body(HOOK_REQUEST)
    g.hook_instance = data["hookInstance"]
    return jsonify(answer(app_state(), data))


def answer(state: Any, data: dict[str, Any]) -> dict[str, Any]:
    """The answer to a loaded, trusted hook call (`state`: the app's AppState): the day run
    within the hook's time budget (THERACHARGE_HOOK_BUDGET_SECONDS), counted and recorded as
    every run is (plugin.pipeline.service), and its cards."""
    auth = data["fhirAuthorization"] or {}
    hook = HookRequest(
        encounter_id=data["context"]["encounterId"],
        fhir_server=data["fhirServer"],
        access_token=auth.get("access_token"),
        prefetch=data["prefetch"],
    )

    def defer(encounter_id: str, day: str | None) -> bool:
        """Queued as a notification is (recorded first, then handed to the worker)."""
        queued = state.store.enqueue(encounter_id, f"hook:{data['hookInstance']}"[:64], day)
        if queued is not None:
            state.queue("notification", queued)
        return queued is not None

    with budget(state.settings.service.hook_budget_seconds):
        outcome = handle_discharge(state, hook, datetime.now().astimezone(), defer)
    return outcome.response()


@blp.route("/<service_id>/feedback", methods=["POST"])
@blp.doc(
    summary="Feedback on cards: accepted or overridden, with the reason",
    requestBody={
        "required": True,
        "content": {JSON: {"schema": FeedbackSchema, "example": examples.FEEDBACK}},
    },
)
@blp.access(CDS_CLIENT, 400, 401, 404)
@blp.response(200, api.Recorded, example={}, description="Recorded in the audit log")
def feedback(service_id: str) -> Response:
    _trusted(service_id)
    data = _body(FEEDBACK)
    store = app_state().store
    for item in data["feedback"]:
        detail = {"outcome": item["outcome"], "at": item["outcomeTimestamp"]}
        if item["overrideReason"]:
            detail["overrideReason"] = item["overrideReason"]
        store.audit("cds-client", f"card-{item['outcome']}", "card", item["card"], detail)
    return jsonify({})
