"""The admin API for background work: received notifications, backfills, and the dead letters
(work set aside after its retries), each retried by hand once its cause is fixed
(docs/deployment.md "Background work")."""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify

from plugin.config.tokens import ROLES
from plugin.errors import Conflict, NotFoundError
from plugin.schemas import api
from plugin.store.queue import KINDS, DeadLetter
from plugin.web import examples
from plugin.web.api_docs import TOKEN, Blueprint
from plugin.web.auth import requires
from plugin.web.state import app_state

WORKERS = ("admin", "billing")  # who may put work back in the queue
blp = Blueprint(
    "work",
    __name__,
    url_prefix="/admin/api/v1",
    description="Background work: notifications, backfills, dead letters (IT admins, billing)",
)


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def notification_json(n: Any) -> dict[str, Any]:
    return {
        "id": n.id,
        "encounter": f"Encounter/{n.encounter_id}",
        "version": n.version or None,
        "status": n.status,
        "attempts": n.attempts,
        "last_error": n.last_error,
        "claimed_by": n.claimed_by,
        "received_at": n.received_at.isoformat(),
        "finished_at": _time(n.finished_at),
        "next_attempt_at": _time(n.next_attempt_at),
    }


@blp.route("/notifications", methods=["GET"])
@blp.doc(
    summary="Received notifications by status (default `failed`: set aside after their "
    "attempts, with the last error); ?status=pending|processing|done|failed"
)
@blp.access(TOKEN, 400, 401, 403)
@blp.response(200, api.Notification(many=True), example=examples.NOTIFICATIONS)
@requires(*ROLES)
@blp.arguments(api.NotificationsQuery, location="query", error_status_code=400)
def notifications(query: dict[str, Any]) -> Response:
    rows = app_state().store.notifications(status=query["status"], limit=500)
    return jsonify([notification_json(n) for n in rows])


@blp.route("/notifications/<int(max=2147483647):notification_id>/retry", methods=["POST"])
@blp.doc(summary="Put a set-aside notification back in the queue (attempts reset), audited")
@blp.access(TOKEN, 401, 403, 404, 409)
@blp.response(200, api.Notification, example={**examples.NOTIFICATIONS[0], "status": "pending"})
@requires(*WORKERS)
def retry_notification(notification_id: int) -> Response:
    return jsonify(notification_json(_retried("notification", notification_id)))


def _retried(kind: str, row_id: int) -> Any:
    """Set-aside work back in the queue (404 when there is none, 409 when not set aside)."""
    row, queued = app_state().retry(kind, row_id, g.caller)
    if row is None:
        raise NotFoundError(f"no {kind} {row_id}")
    if not queued:
        raise Conflict(f"{kind} {row_id} is {row.status}, not set aside")
    return row


def dead_letter_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "kind": letter.kind,
        "id": letter.id,
        "key": letter.key,
        "reason": letter.reason,
        "attempts": letter.attempts,
        "first_seen": _time(letter.first_seen),
        "last_tried": _time(letter.last_tried),
    }


@blp.route("/outlet/messages", methods=["GET"])
@blp.doc(
    summary="The HL7 v2 messages sent to the billing system (newest first, 500 at most): "
    "pending, accepted or refused, with the receiver's words; never the message itself"
)
@blp.access(TOKEN, 400, 401, 403)
@blp.response(200, api.OutletMessage(many=True), example=examples.OUTLET_MESSAGES)
@requires(*WORKERS)
@blp.arguments(api.OutletMessagesQuery, location="query", error_status_code=400)
def outlet_messages(query: dict[str, Any]) -> Response:
    return jsonify(app_state().store.outlet_messages("hl7v2", query["day"]))


@blp.route("/dead-letters", methods=["GET"])
@blp.doc(
    summary="Work set aside after its retries (notifications, backfill days), newest first: "
    "what failed, why, how many attempts; and how often each reason occurs"
)
@blp.access(TOKEN, 401, 403)
@blp.response(200, api.DeadLetters, example=examples.DEAD_LETTERS)
@requires(*ROLES)
def dead_letters() -> Response:
    letters = app_state().store.dead_letters(limit=500)
    reasons: dict[str, int] = {}
    for letter in letters:
        reasons[letter.reason] = reasons.get(letter.reason, 0) + 1
    return jsonify(
        {
            "counts": app_state().store.dead_letter_counts(),
            "reasons": [
                {"reason": reason, "count": count}
                for reason, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
            ],
            "items": [dead_letter_json(letter) for letter in letters],
        }
    )


@blp.route("/dead-letters/<kind>/<int(max=2147483647):row_id>/retry", methods=["POST"])
@blp.doc(summary="Put a dead letter (notification or backfill-day) back in the queue, audited")
@blp.access(TOKEN, 401, 403, 404, 409)
@blp.response(200, api.Requeued, example=examples.REQUEUED)
@requires(*WORKERS)
def retry_dead_letter(kind: str, row_id: int) -> Response:
    if kind not in KINDS:
        raise NotFoundError(f"no kind of work {kind!r}: {', '.join(KINDS)}")
    _retried(kind, row_id)
    return jsonify({"kind": kind, "id": row_id, "status": "pending"})


def backfill_json(backfill: Any, progress: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": backfill.id,
        "created_at": backfill.created_at.isoformat(),
        "actor": backfill.actor,
        "since": backfill.since,
        "until": backfill.until,
        "dry_run": backfill.dry_run,
        **progress,
    }


@blp.route("/backfills", methods=["GET"])
@blp.doc(summary="Backfill runs, newest first, each with its progress and outcome counts")
@blp.access(TOKEN, 401, 403)
@blp.response(200, api.Backfill(many=True), example=[examples.BACKFILL])
@requires(*ROLES)
def backfills() -> Response:
    store = app_state().store
    return jsonify([backfill_json(b, store.backfill_progress(b.id)) for b in store.backfills()])


@blp.route("/backfills/<int(max=2147483647):backfill_id>", methods=["GET"])
@blp.doc(
    summary="One backfill: days by status; of those decided, written, unchanged, planned (a "
    "dry run), held (days with lines held for documentation); failed, with the reasons"
)
@blp.access(TOKEN, 401, 403, 404)
@blp.response(200, api.Backfill, example=examples.BACKFILL)
@requires(*ROLES)
def backfill(backfill_id: int) -> Response:
    store = app_state().store
    found = store.backfill(backfill_id)
    if found is None:
        raise NotFoundError(f"no backfill {backfill_id}")
    return jsonify(backfill_json(found, store.backfill_progress(backfill_id)))
