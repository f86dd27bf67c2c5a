"""The card's SMART app link: the EHR launches TheraCharge in the clinician's session (SMART App
Launch 2.x, EHR launch) and the clinician lands on the visit's decision page, signed in to read.

/smart/launch?iss=…&launch=… → the EHR's authorize endpoint → /smart/callback?code=…&state=…
→ /decisions/{encounter of the launch context}. Only an `iss` TheraCharge is configured for
(THERACHARGE_FHIR_BASE_URL or THERACHARGE_FHIR_SERVER_ALLOWLIST) is contacted.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, abort, redirect, request, session, url_for
from werkzeug.wrappers import Response

from plugin.gateway.errors import FhirError
from plugin.gateway.smart_app import exchange_code, pkce_pair, smart_configuration
from plugin.web.state import app_state

bp = Blueprint("smart", __name__, url_prefix="/smart")
SCOPES = "launch openid fhirUser user/Encounter.read"


def _settings() -> Any:
    return app_state().settings


def _redirect_uri() -> str:
    return f"{_settings().service.public_url}/smart/callback"


@bp.route("/launch")
def launch() -> Response:
    settings = _settings()
    client_id = settings.service.smart_app_client_id
    if not client_id or not settings.service.public_url:
        abort(404, "SMART app launch is not configured (THERACHARGE_SMART_APP_CLIENT_ID)")
    iss = request.args.get("iss", "").rstrip("/")
    launch_id = request.args.get("launch", "")
    allowed = {settings.fhir.base_url, *settings.service.fhir_server_allowlist} - {None}
    if not iss or iss not in allowed:
        abort(400, "iss: not a FHIR server TheraCharge is configured for")
    if not launch_id:
        abort(400, "launch: the EHR's launch id is required")
    try:
        config = smart_configuration(iss)
    except FhirError as exc:
        abort(502, str(exc))
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(24)
    session["smart"] = {
        "state": state,
        "verifier": verifier,
        "token_endpoint": config["token_endpoint"],
    }
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": _redirect_uri(),
            "launch": launch_id,
            "scope": SCOPES,
            "state": state,
            "aud": iss,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    return redirect(f"{config['authorization_endpoint']}?{query}")


@bp.route("/callback")
def callback() -> Response:
    started = session.pop("smart", None)
    state = request.args.get("state", "")
    if not isinstance(started, dict) or not hmac.compare_digest(str(started["state"]), state):
        abort(400, "state: this sign-in was not started here, or it expired; launch again")
    if request.args.get("error"):
        abort(403, f"the EHR did not authorize TheraCharge: {request.args['error']}")
    try:
        context = exchange_code(
            started["token_endpoint"],
            request.args.get("code", ""),
            _redirect_uri(),
            _settings().service.smart_app_client_id,
            started["verifier"],
        )
    except FhirError as exc:
        abort(502, str(exc))
    encounter = str(context.get("encounter") or "").split("/")[-1]
    if not encounter:
        abort(400, "the EHR's launch context names no encounter")
    session["who"] = f"smart:{context.get('fhirUser') or 'clinician'}"
    session["role"] = "viewer"  # a clinician from the EHR reads; billing staff change
    return redirect(url_for("pages.decision", encounter_id=encounter))
