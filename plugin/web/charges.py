"""The charges API: decide (and write) one encounter's charges on demand."""

from __future__ import annotations

import logging

from flask import Response, current_app, jsonify, request
from flask_smorest import Blueprint

from plugin.config.tokens import ROLES
from plugin.errors import BadRequest, ServiceUnavailable
from plugin.pipeline.billing_day import WriteMode, run_report
from plugin.pipeline.service import Job, execute
from plugin.web.auth import bearer_caller

log = logging.getLogger(__name__)
blp = Blueprint(
    "charges", __name__, url_prefix="/api/v1", description="Charges of an encounter's billing day"
)


def _charges(encounter_id: str, dry_run: bool) -> Response:
    caller = bearer_caller("billing", "admin") if not dry_run else bearer_caller(*ROLES)
    state = current_app.extensions["theracharge"]
    if state.gatherer() is None:
        raise ServiceUnavailable("no EHR configured: set THERACHARGE_FHIR_BASE_URL")
    job = Job(
        encounter_id,
        f"api:{caller}",
        WriteMode.PLAN if dry_run else WriteMode.WRITE,
        wait=True,  # billing tools read the worklist next, perhaps from another worker
    )
    body = run_report(execute(state, job))
    body["dry_run"] = dry_run
    return jsonify(body)


@blp.route("/encounters/<encounter_id>/charges", methods=["POST"])
@blp.doc(
    summary="Decide and write the charges of the encounter's billing day (dry_run=true: plan only)"
)
def post_charges(encounter_id: str) -> Response:
    flag = request.args.get("dry_run", "false").lower()
    if flag not in ("true", "false"):
        raise BadRequest("dry_run: expected true or false", [("dry_run", flag)])
    return _charges(encounter_id, flag == "true")


@blp.route("/encounters/<encounter_id>/charges", methods=["GET"])
@blp.doc(summary="The charges of the encounter's billing day as decided now, without writing")
def get_charges(encounter_id: str) -> Response:
    return _charges(encounter_id, True)
