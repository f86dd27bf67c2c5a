"""FHIR Subscription notifications: acknowledged at once, recorded, processed in the background."""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Response, jsonify, request

from plugin.errors import BadRequest
from plugin.pipeline.service import day_of
from plugin.schemas import api
from plugin.web import examples
from plugin.web.api_docs import FHIR, NOTIFIER, Blueprint, raw_body
from plugin.web.auth import notification_sender
from plugin.web.state import app_state

log = logging.getLogger(__name__)
blp = Blueprint(
    "notifications",
    __name__,
    url_prefix="/notifications/fhir",
    description="FHIR Subscription notifications (R4 rest-hook, R4 Backport)",
)
_ENCOUNTER_URL = re.compile(r"(?:^|/)Encounter/([A-Za-z0-9\-.]{1,64})(?:/_history/([^/]+))?$")


def _enqueue(encounter_id: str, version: str | None, day: str | None = None) -> bool:
    """Recorded (before the EHR gets its 200), then handed to the task queue when there is one;
    False when this encounter version was recorded before."""
    state = app_state()
    notification_id = state.store.enqueue(encounter_id, version or "", day)
    if notification_id is None:
        return False
    state.queue("notification", notification_id)
    return True


@blp.route("/Encounter/<encounter_id>", methods=["PUT"])
@blp.doc(
    summary="R4 rest-hook with payload: the changed Encounter",
    **raw_body("The changed Encounter (a FHIR R4 resource)", FHIR, examples.ENCOUNTER),
)
@blp.access(NOTIFIER, 400, 401, 413, 503)
@blp.response(200, api.Queued, example={"queued": True}, description="Recorded; decided later")
def encounter_changed(encounter_id: str) -> Response:
    notification_sender()
    resource = request.get_json(silent=True)
    if not isinstance(resource, dict) or resource.get("resourceType") != "Encounter":
        raise BadRequest("expected the Encounter resource as the body")
    if resource.get("id") not in (None, encounter_id):
        raise BadRequest("the Encounter's id differs from the URL")
    if resource.get("status") != "finished":
        return jsonify({"queued": False, "reason": "encounter not finished"})
    queued = _enqueue(encounter_id, _version(resource) or "", day_of(resource))
    return jsonify({"queued": queued})


@blp.route("", methods=["POST"])
@blp.doc(
    summary="An empty ping, or an R4 Backport notification Bundle (id-only or full-resource)",
    **raw_body(
        "Nothing (a ping), or an R4 Backport notification Bundle (id-only or full-resource)",
        FHIR,
        examples.NOTIFICATION_BUNDLE,
        required=False,
    ),
)
@blp.access(NOTIFIER, 400, 401, 413, 503)
@blp.response(200, api.QueuedCount, example={"queued": 1}, description="Encounters queued")
def bundle_notification() -> Response:
    notification_sender()
    if not request.data.strip():
        return jsonify({"queued": 0})  # a ping without payload: nothing names an encounter
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise BadRequest("expected an empty body or a notification Bundle")
    queued = sum(1 for named in _encounters(body) if _enqueue(*named))
    return jsonify({"queued": queued})


def _version(resource: dict[str, Any]) -> str | None:
    """The resource's meta.versionId; a `meta` that is not an object is refused by name."""
    meta = resource.get("meta")
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise BadRequest("meta: expected an object", [("meta", "object")])
    version = meta.get("versionId")
    return str(version) if version else None


def _encounters(bundle: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """Encounters a Backport notification names: full resources, or fullUrls (id-only)."""
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise BadRequest("entry: expected a list of Bundle entries", [("entry", "list")])
    found = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        resource = entry.get("resource")
        if isinstance(resource, dict) and resource.get("resourceType") == "Encounter":
            if resource.get("status") == "finished" and resource.get("id"):
                found.append((str(resource["id"]), _version(resource), day_of(resource)))
            continue
        if resource is None:
            match = _ENCOUNTER_URL.search(str(entry.get("fullUrl", "")))
            if match:
                found.append((match.group(1), match.group(2), None))
    return found
