"""The charges API: decide (and write) one encounter's charges on demand."""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, g, jsonify

from plugin.config.tokens import ROLES
from plugin.errors import Forbidden, ServiceUnavailable
from plugin.pipeline.billing_day import WriteMode, run_report
from plugin.pipeline.service import Job, execute
from plugin.schemas import api
from plugin.web import examples
from plugin.web.api_docs import TOKEN, Blueprint
from plugin.web.auth import current_role, requires
from plugin.web.state import app_state

log = logging.getLogger(__name__)
blp = Blueprint(
    "charges", __name__, url_prefix="/api/v1", description="Charges of an encounter's billing day"
)


def _charges(encounter_id: str, dry_run: bool) -> Response:
    state = app_state()
    if state.gatherer() is None:
        raise ServiceUnavailable("no EHR configured: set THERACHARGE_FHIR_BASE_URL")
    job = Job(
        encounter_id,
        f"api:{g.caller}",
        WriteMode.PLAN if dry_run else WriteMode.WRITE,
        wait=True,  # billing tools read the worklist next, perhaps from another worker
    )
    body = run_report(execute(state, job))
    body["dry_run"] = dry_run
    return jsonify(body)


@blp.route("/encounters/<encounter_id>/charges", methods=["POST"])
@blp.doc(
    summary="Decide and write the charges of the encounter's billing day (dry_run=true: plan "
    "only, any role; writing: the billing or admin role)"
)
@blp.access(TOKEN, 400, 401, 403, 404, 502, 503, 504)
@blp.response(200, api.DayReport, example=examples.REPORT, description="The day's report")
@requires(*ROLES)
@blp.arguments(api.ChargesQuery, location="query", error_status_code=400)
def post_charges(query: dict[str, Any], encounter_id: str) -> Response:
    if not query["dry_run"] and current_role() not in ("billing", "admin"):
        log.warning("token %s (role %s) refused for writing charges", g.caller, current_role())
        raise Forbidden(f"the {current_role()} role cannot do this")
    return _charges(encounter_id, query["dry_run"])


@blp.route("/encounters/<encounter_id>/charges", methods=["GET"])
@blp.doc(summary="The charges of the encounter's billing day as decided now, without writing")
@blp.access(TOKEN, 401, 403, 404, 502, 503, 504)
@blp.response(200, api.DayReport, example={**examples.REPORT, "dry_run": True})
@requires(*ROLES)
def get_charges(encounter_id: str) -> Response:
    return _charges(encounter_id, True)
