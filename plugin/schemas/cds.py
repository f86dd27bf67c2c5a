"""CDS Hooks 2.0 request bodies: the hook call and the feedback, validated strictly."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate

# `$(?!\n)`: the end of the text in Python (whose `$` also matches before a final newline) and
# in the ECMAScript regexes of /openapi.json, which document these patterns (`\Z` is Python's)
END = r"$(?!\n)"
_ENCOUNTER_ID = r"^[A-Za-z0-9\-.]{1,64}" + END


class FhirAuthorizationSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    # RFC 6750 §2.1 b64token: what an Authorization header can carry (a character outside it
    # could not be sent on, and must be refused here rather than fail mid-request).
    access_token = fields.String(
        required=True,
        validate=validate.Regexp(
            r"^[A-Za-z0-9\-._~+/]+=*" + END,
            error="not a bearer token (RFC 6750 b64token characters)",
        ),
    )
    token_type = fields.String(required=True, validate=validate.Equal("Bearer"))
    expires_in = fields.Integer(required=True, strict=True)
    scope = fields.String(required=True)
    subject = fields.String(required=True)


class DischargeContextSchema(Schema):
    """encounter-discharge context (CDS Hooks library, STU1): all three are required."""

    class Meta:
        unknown = EXCLUDE

    userId = fields.String(required=True, validate=validate.Length(min=1))
    patientId = fields.String(required=True, validate=validate.Length(min=1))
    encounterId = fields.String(required=True, validate=validate.Regexp(_ENCOUNTER_ID))


class HookRequestSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # CDS clients may send extensions

    hook = fields.String(
        required=True,
        validate=validate.Equal("encounter-discharge", error="must be encounter-discharge"),
    )
    hookInstance = fields.String(required=True, validate=validate.Length(min=1, max=200))
    fhirServer = fields.Url(load_default=None, require_tld=False)
    fhirAuthorization = fields.Nested(FhirAuthorizationSchema, load_default=None)
    context = fields.Nested(DischargeContextSchema, required=True)
    # Any JSON object: its keys are strings and each value may be anything, null included
    # (checked where used, plugin/pipeline/hooks.py); per-entry fields only doubled the load's cost.
    prefetch = fields.Dict(load_default=dict)


_PLAIN_ENCOUNTER = re.compile(_ENCOUNTER_ID)


def plain_hook_request(raw: dict[str, Any]) -> dict[str, Any] | None:
    """The common call checked by hand: what `HookRequestSchema().load(raw)` returns for it,
    or None when the body is anything else (a server to call back, an authorization, an
    unexpected type or value), which the schema then loads or refuses with its messages.

    The schema costs about 20 µs a call on a hook body, this check under 2 µs.
    `tests/web/test_cds_hooks.py` holds the two to the same answers."""
    if raw.get("hook") != "encounter-discharge" or raw.get("fhirServer") is not None:
        return None
    if raw.get("fhirAuthorization") is not None:
        return None
    instance, context = raw.get("hookInstance"), raw.get("context")
    if not isinstance(instance, str) or not 1 <= len(instance) <= 200:
        return None
    if not isinstance(context, dict):
        return None
    user, patient, encounter = (
        context.get("userId"), context.get("patientId"), context.get("encounterId")
    )  # fmt: skip
    if not (isinstance(user, str) and user and isinstance(patient, str) and patient):
        return None
    if not isinstance(encounter, str) or not _PLAIN_ENCOUNTER.match(encounter):
        return None
    prefetch = raw.get("prefetch", {})
    if not isinstance(prefetch, dict) or not all(isinstance(k, str) for k in prefetch):
        return None
    return {
        "hook": "encounter-discharge",
        "hookInstance": instance,
        "fhirServer": None,
        "fhirAuthorization": None,
        "context": {"userId": user, "patientId": patient, "encounterId": encounter},
        "prefetch": prefetch,
    }


class OverrideReasonSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    reason = fields.Dict(load_default=None)
    userComment = fields.String(load_default=None)


class FeedbackItemSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    card = fields.String(required=True)
    outcome = fields.String(required=True, validate=validate.OneOf(["accepted", "overridden"]))
    acceptedSuggestions = fields.List(fields.Dict(), load_default=list)
    overrideReason = fields.Nested(OverrideReasonSchema, load_default=None)
    outcomeTimestamp = fields.String(required=True)


class FeedbackSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    feedback = fields.List(
        fields.Nested(FeedbackItemSchema), required=True, validate=validate.Length(min=1)
    )
