"""What /openapi.json says of each operation beyond its summary: who may call it (security
scheme), its request body, its success and error responses, with examples.

Added through apispec's public plugin hook (`operation_helper`, called for every path the
blueprints register), so the routes keep their one-line `@blp.doc(summary=…)`. A route missing
here is caught by tests/web/test_openapi.py.
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec, BasePlugin
from flask import Response, send_from_directory
from swagger_ui_bundle import swagger_ui_path

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

# Error responses, as components.responses: (status, name, description, example)
ERRORS: list[tuple[str, str, str, dict[str, Any]]] = [
    (
        "400",
        "BadRequest",
        "The request is malformed (the message names what).",
        {"error": "bad-request", "message": "dry_run: expected true or false"},
    ),
    ("401", "Unauthorized", "No valid credentials.", {"error": "unauthorized"}),
    (
        "403",
        "Forbidden",
        "The credentials' role may not do this.",
        {"error": "forbidden", "message": "this needs the admin role"},
    ),
    (
        "404",
        "NotFound",
        "No such thing (the message names it).",
        {"error": "not-found", "message": "Encounter/123 is not on the EHR"},
    ),
    (
        "409",
        "Conflict",
        "The table changed since the version named in If-Match, or the "
        "request conflicts with the current state.",
        {"error": "conflict", "message": "payers is at version 4, not 3"},
    ),
    (
        "413",
        "TooLarge",
        "The body is larger than THERACHARGE_MAX_REQUEST_BYTES.",
        {"error": "request-entity-too-large", "message": "the body is too large"},
    ),
    (
        "422",
        "Invalid",
        "The content is not valid: every field at fault is named.",
        {
            "error": "invalid",
            "message": "fees.schedules[0].amounts.9711: not a CPT/HCPCS code",
            "fields": {"fees.schedules[0].amounts.9711": "not a CPT/HCPCS code"},
        },
    ),
    (
        "502",
        "EhrFailed",
        "The EHR answered with an error or could not be reached.",
        {"error": "ehr-error", "message": "the EHR answered HTTP 503"},
    ),
    (
        "504",
        "EhrTooSlow",
        "The EHR (or another run holding the billing day) did not answer within "
        "THERACHARGE_REQUEST_BUDGET_SECONDS; nothing was half-written. Try again after "
        "Retry-After.",
        {"error": "ehr-too-slow", "message": "the request's time budget ran out"},
    ),
    (
        "503",
        "Unavailable",
        "Our database or the EHR connection is not available; try again.",
        {"error": "unavailable", "message": "the database is unavailable; try again"},
    ),
]


def _errors(*statuses: str) -> dict[str, Any]:
    names = {status: name for status, name, _, _ in ERRORS}
    return {s: {"$ref": f"#/components/responses/{names[s]}"} for s in statuses}


def _ok(description: str, example: Any = None, media: str = JSON) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": {"type": "object"}}
    if isinstance(example, list):
        content["schema"] = {"type": "array", "items": {"type": "object"}}
    elif isinstance(example, str):
        content["schema"] = {"type": "string"}
    if example is not None:
        content["example"] = example
    return {"description": description, "content": {media: content}}


def _body(description: str, example: Any, media: str = JSON, required: bool = True) -> Any:
    schema: dict[str, Any] = {"type": "string"} if isinstance(example, str) else {"type": "object"}
    return {
        "required": required,
        "description": description,
        "content": {media: {"schema": schema, "example": example}},
    }


TOKEN: list[dict[str, list[str]]] = [{"apiToken": []}]
PUBLIC: list[dict[str, list[str]]] = []
SAVED = _ok("Stored as a new version", {"kind": "payers", "name": "payers", "version": 4})
ROLLBACK_BODY = _body(
    "The version whose content becomes current again, and why",
    {"version": 2, "reason": "undo the change of 30 November"},
)
VERSIONS = _ok(
    "Every version, newest last: who, when, why, what changed",
    [
        {
            "version": 1,
            "author": "system",
            "at": "2026-11-30T09:00:00+00:00",
            "reason": "imported from the shipped configuration at first start",
            "diff": [],
            "deleted": False,
        }
    ],
)
CONCEPT_MAP = {
    "resourceType": "ConceptMap",
    "status": "active",
    "group": [
        {
            "source": "https://ehr.example.org/fhir/CodeSystem/therapy-charge-codes",
            "target": "http://www.ama-assn.org/go/cpt",
            "element": [
                {
                    "code": "PT-THEREX",
                    "target": [
                        {
                            "code": "97110",
                            "equivalence": "equivalent",
                            "comment": "EHR charge master, therapeutic exercise",
                        }
                    ],
                }
            ],
        }
    ],
}
HOOK_REQUEST = {
    "hook": "encounter-discharge",
    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "fhirServer": "https://ehr.example.org/fhir",
    "context": {"userId": "Practitioner/pt1", "patientId": "pat-1", "encounterId": "enc-1"},
    "prefetch": {"encounter": {"resourceType": "Encounter", "id": "enc-1"}},
}
CARDS = {
    "cards": [
        {
            "summary": "Charges (CMS): 97110-GP ×2, 97140-GP ×1",
            "indicator": "info",
            "source": {"label": "TheraCharge"},
        }
    ]
}
REPORT = {
    "encounter": "Encounter/enc-1",
    "lines": [{"code": "97110", "units": 2, "modifiers": ["GP"], "status": "billable"}],
    "problems": [],
    "written": {"sent": True, "created": ["Patient/pat-1/2026-11-02/PT/Organization/clinic/97110"]},
    "dry_run": False,
}

BACKFILL = {
    "id": 3,
    "created_at": "2026-11-30T09:00:00+00:00",
    "actor": "cli:ann",
    "since": "2026-10-01",
    "until": "2026-10-31",
    "dry_run": False,
    "days": 1200,
    "finished": 1200,
    "status": {"done": 1198, "failed": 2},
    "written": 310,
    "unchanged": 888,
    "planned": 0,
    "held": 41,
    "failed": 2,
    "lines": 3004,
    "failures": [{"encounter": "enc-9", "reason": "GET /Encounter/enc-9 → HTTP 403"}],
}
OPERATIONS: dict[str, dict[str, Any]] = {
    # --- CDS Hooks ---------------------------------------------------------------------------
    "get /cds-services": {
        "security": PUBLIC,
        "responses": {
            "200": _ok(
                "The discovery document (CDS Hooks 2.0)",
                {
                    "services": [
                        {
                            "hook": "encounter-discharge",
                            "id": "therapy-charges",
                            "title": "Therapy charge capture",
                            "prefetch": {"encounter": "Encounter/{{context.encounterId}}"},
                        }
                    ]
                },
            )
        },
    },
    "post /cds-services/{service_id}": {
        "security": [{"cdsClient": []}],
        "requestBody": _body(
            "A CDS Hooks request: hook, hookInstance, context, prefetch", HOOK_REQUEST
        ),
        "responses": {
            "200": _ok("Cards: the charges, a card per held line and per kind of warning", CARDS),
            "412": {
                "description": "The prefetch lacks what the decision needs and there is no EHR "
                "to read it from (CDS Hooks: an OperationOutcome)",
                "content": {JSON: {"schema": OUTCOME_SCHEMA}},
            },
            **_errors("400", "401", "404", "413", "422", "502"),
        },
    },
    "post /cds-services/{service_id}/feedback": {
        "security": [{"cdsClient": []}],
        "requestBody": _body(
            "CDS Hooks feedback: which cards were accepted or overridden, with reasons",
            {
                "feedback": [
                    {
                        "card": "card-uuid",
                        "outcome": "overridden",
                        "overrideReason": {"reason": {"code": "documented-elsewhere"}},
                        "outcomeTimestamp": "2026-11-02T18:00:00Z",
                    }
                ]
            },
        ),
        "responses": {"200": _ok("Recorded", {}), **_errors("400", "401", "404", "422")},
    },
    # --- charges API -------------------------------------------------------------------------
    "post /api/v1/encounters/{encounter_id}/charges": {
        "security": TOKEN,
        "parameters": [
            {
                "name": "dry_run",
                "in": "query",
                "required": False,
                "schema": {"type": "boolean", "default": False},
                "description": "true: decide and plan, write nothing (any role)",
            }
        ],
        "responses": {
            "200": _ok("The day's report: lines, problems, what was written", REPORT),
            **_errors("400", "401", "403", "404", "502", "503", "504"),
        },
    },
    "get /api/v1/encounters/{encounter_id}/charges": {
        "security": TOKEN,
        "responses": {
            "200": _ok("The day's report as decided now (nothing written)", REPORT),
            **_errors("401", "403", "404", "502", "503", "504"),
        },
    },
    # --- notifications -----------------------------------------------------------------------
    "put /notifications/fhir/Encounter/{encounter_id}": {
        "security": [{"notificationSecret": []}],
        "requestBody": _body(
            "The changed Encounter (R4 rest-hook with payload)",
            {"resourceType": "Encounter", "id": "enc-1", "status": "finished"},
            FHIR,
        ),
        "responses": {
            "200": _ok("Recorded before answering; decided in the background", {"queued": True}),
            **_errors("400", "401", "413", "503"),
        },
    },
    "post /notifications/fhir": {
        "security": [{"notificationSecret": []}],
        "requestBody": _body(
            "Nothing (a ping), or an R4 Backport notification Bundle (id-only or full-resource)",
            {"resourceType": "Bundle", "type": "history", "entry": []},
            FHIR,
            required=False,
        ),
        "responses": {
            "200": _ok("How many encounters were queued", {"queued": 1}),
            **_errors("400", "401", "413", "503"),
        },
    },
    # --- health ------------------------------------------------------------------------------
    "get /healthz": {"security": PUBLIC, "responses": {"200": _ok("Alive", {"status": "ok"})}},
    "get /readyz": {
        "security": PUBLIC,
        "responses": {
            "200": _ok(
                "Everything it needs answers",
                {
                    "status": "ready",
                    "checks": {"settings": "ok", "database": "ok", "notification_worker": "ok"},
                },
            ),
            "503": _ok("Something it needs does not answer (named)", {"status": "not-ready"}),
        },
    },
    "get /metrics": {
        "security": PUBLIC,
        "responses": {
            "200": _ok(
                "Prometheus text exposition", "theracharge_decisions_total 12\n", "text/plain"
            )
        },
    },
    # --- admin: mapping tables ---------------------------------------------------------------
    "get /admin/api/v1/mappings": {
        "security": TOKEN,
        "responses": {
            "200": _ok(
                "The tables",
                [
                    {
                        "name": "snomed-therapy.json",
                        "version": 1,
                        "updated": "2026-11-30T09:00:00+00:00",
                        "author": "system",
                    }
                ],
            ),
            **_errors("401", "403"),
        },
    },
    "get /admin/api/v1/mappings/{name}": {
        "security": TOKEN,
        "responses": {
            "200": _ok("The table's ConceptMap; ETag: its version", CONCEPT_MAP),
            **_errors("401", "403", "404"),
        },
    },
    "put /admin/api/v1/mappings/{name}": {
        "security": TOKEN,
        "requestBody": _body(
            "The new table and why", {"reason": "new charge codes", "conceptMap": CONCEPT_MAP}
        ),
        "responses": {"200": SAVED, **_errors("400", "401", "403", "409", "422")},
    },
    "delete /admin/api/v1/mappings/{name}": {
        "security": TOKEN,
        "responses": {"200": SAVED, **_errors("400", "401", "403", "404", "422")},
    },
    "get /admin/api/v1/mappings/{name}/versions": {
        "security": TOKEN,
        "responses": {"200": VERSIONS, **_errors("401", "403", "404")},
    },
    "get /admin/api/v1/mappings/{name}/versions/{version}": {
        "security": TOKEN,
        "responses": {
            "200": _ok(
                "The version with its content",
                {
                    "version": 2,
                    "author": "ann",
                    "at": "2026-11-30T09:00:00+00:00",
                    "reason": "new charge codes",
                    "diff": [],
                    "deleted": False,
                    "content": CONCEPT_MAP,
                },
            ),
            **_errors("401", "403", "404"),
        },
    },
    "post /admin/api/v1/mappings/{name}/rollback": {
        "security": TOKEN,
        "requestBody": ROLLBACK_BODY,
        "responses": {"200": SAVED, **_errors("401", "403", "404", "422")},
    },
    "post /admin/api/v1/mappings/try": {
        "security": TOKEN,
        "requestBody": _body(
            "A coding, or a whole Procedure",
            {"coding": {"system": "http://snomed.info/sct", "code": "226049009"}},
        ),
        "responses": {
            "200": _ok(
                "The code it bills under, and why",
                {"code": "97112", "how": "mapped", "detail": "snomed-therapy.json"},
            ),
            **_errors("400", "401", "403", "422"),
        },
    },
    # --- admin: payers, NCCI, fees, vocabulary -----------------------------------------------
    "get /admin/api/v1/payers": {
        "security": TOKEN,
        "responses": {
            "200": _ok(
                "The payer rules; ETag: their version", {"default_method": "cms", "payers": []}
            ),
            **_errors("401", "403"),
        },
    },
    "put /admin/api/v1/payers": {
        "security": TOKEN,
        "requestBody": _body(
            "The payer rules and why",
            {
                "reason": "UHC adopted CQ/CO",
                "payers": {"default_method": "cms", "default_source": "…", "payers": []},
            },
        ),
        "responses": {"200": SAVED, **_errors("400", "401", "403", "409", "422")},
    },
    "get /admin/api/v1/payers/versions": {
        "security": TOKEN,
        "responses": {"200": VERSIONS, **_errors("401", "403")},
    },
    "post /admin/api/v1/payers/rollback": {
        "security": TOKEN,
        "requestBody": ROLLBACK_BODY,
        "responses": {"200": SAVED, **_errors("401", "403", "404", "422")},
    },
    "put /admin/api/v1/ncci/{table}": {
        "security": TOKEN,
        "parameters": [
            {"name": "reason", "in": "query", "required": True, "schema": {"type": "string"}},
            {"name": "filename", "in": "query", "schema": {"type": "string"}},
            {"name": "effective", "in": "query", "schema": {"type": "string", "format": "date"}},
        ],
        "requestBody": _body(
            "CMS's quarterly practitioner file(s) as text",
            "97110\t97530\t20150101\t*\t1\n",
            "text/plain",
        ),
        "responses": {
            "200": _ok("Stored", {"kind": "ncci", "name": "ptp", "version": 2, "rows": 412}),
            **_errors("400", "401", "403", "404", "422"),
        },
    },
    "get /admin/api/v1/ncci/{table}/versions": {
        "security": TOKEN,
        "responses": {"200": VERSIONS, **_errors("401", "403", "404")},
    },
    "get /admin/api/v1/fees": {
        "security": TOKEN,
        "responses": {
            "200": _ok(
                "The fee schedule; ETag: its stored version",
                {
                    "currency": "USD",
                    "schedules": [
                        {
                            "effective": "2026-01-01",
                            "source": "illustrative",
                            "amounts": {"97110": 29.0},
                        }
                    ],
                },
            ),
            **_errors("401", "403"),
        },
    },
    "put /admin/api/v1/fees": {
        "security": TOKEN,
        "requestBody": _body(
            "The fee schedule and why",
            {
                "reason": "new contract",
                "fees": {
                    "currency": "USD",
                    "schedules": [
                        {
                            "effective": "2027-01-01",
                            "source": "contract",
                            "amounts": {"97110": 31.25},
                        }
                    ],
                },
            },
        ),
        "responses": {"200": SAVED, **_errors("400", "401", "403", "409", "422")},
    },
    "put /admin/api/v1/fees/import": {
        "security": TOKEN,
        "parameters": [
            {
                "name": "effective",
                "in": "query",
                "required": True,
                "schema": {"type": "string", "format": "date"},
            },
            {"name": "reason", "in": "query", "required": True, "schema": {"type": "string"}},
            {"name": "source", "in": "query", "schema": {"type": "string"}},
            {"name": "filename", "in": "query", "schema": {"type": "string"}},
        ],
        "requestBody": _body(
            "A CSV with a code and an amount column",
            "HCPCS,NON-FACILITY PRICE\n97110,$31.25\n",
            "text/csv",
        ),
        "responses": {
            "200": _ok(
                "Stored", {"kind": "fees", "name": "fee-schedule", "version": 2, "codes": 1}
            ),
            **_errors("400", "401", "403", "422"),
        },
    },
    "get /admin/api/v1/fees/versions": {
        "security": TOKEN,
        "responses": {"200": VERSIONS, **_errors("401", "403")},
    },
    "post /admin/api/v1/fees/rollback": {
        "security": TOKEN,
        "requestBody": ROLLBACK_BODY,
        "responses": {"200": SAVED, **_errors("401", "403", "404", "422")},
    },
    "get /admin/api/v1/vocabulary": {
        "security": TOKEN,
        "responses": {
            "200": _ok(
                "The vocabulary (config/rules/activities.yaml's shape); ETag: its stored version",
                {
                    "codes": {"97112": {"name": "neuromuscular re-education"}},
                    "concepts": [
                        {
                            "name": "balance on reduced or unstable support",
                            "code": "97112",
                            "weight": 3,
                            "terms": ["single leg stance", "SLS", "foam"],
                        }
                    ],
                },
            ),
            **_errors("401", "403"),
        },
    },
    "put /admin/api/v1/vocabulary": {
        "security": TOKEN,
        "requestBody": _body(
            "The whole vocabulary and why",
            {
                "reason": "our therapists write Nordics",
                "vocabulary": {"concepts": ["…"], "negation": {}, "review": {}},
            },
        ),
        "responses": {"200": SAVED, **_errors("400", "401", "403", "409", "422")},
    },
    "get /admin/api/v1/vocabulary/versions": {
        "security": TOKEN,
        "responses": {"200": VERSIONS, **_errors("401", "403")},
    },
    "post /admin/api/v1/vocabulary/rollback": {
        "security": TOKEN,
        "requestBody": ROLLBACK_BODY,
        "responses": {"200": SAVED, **_errors("401", "403", "404", "422")},
    },
    # --- admin: notifications and audit ------------------------------------------------------
    "get /admin/api/v1/notifications": {
        "security": TOKEN,
        "parameters": [
            {
                "name": "status",
                "in": "query",
                "schema": {
                    "type": "string",
                    "enum": ["pending", "processing", "done", "failed"],
                    "default": "failed",
                },
            }
        ],
        "responses": {
            "200": _ok(
                "Notifications",
                [
                    {
                        "id": 7,
                        "encounter": "Encounter/enc-1",
                        "status": "failed",
                        "attempts": 5,
                        "last_error": "the EHR answered HTTP 503",
                    }
                ],
            ),
            **_errors("400", "401", "403"),
        },
    },
    "post /admin/api/v1/notifications/{notification_id}/retry": {
        "security": TOKEN,
        "responses": {
            "200": _ok("Back in the queue", {"id": 7, "status": "pending"}),
            **_errors("401", "403", "404", "409"),
        },
    },
    "get /admin/api/v1/dead-letters": {
        "security": TOKEN,
        "responses": {
            "200": _ok(
                "Dead letters, newest first, with counts by kind and by reason",
                {
                    "counts": {"notification": 1, "backfill-day": 0},
                    "reasons": [{"reason": "GET /Encounter/x → HTTP 403", "count": 1}],
                    "items": [
                        {
                            "kind": "notification",
                            "id": 7,
                            "key": "Encounter/enc-1",
                            "reason": "GET /Encounter/x → HTTP 403",
                            "attempts": 1,
                            "first_seen": "2026-11-30T09:00:00+00:00",
                            "last_tried": "2026-11-30T09:00:01+00:00",
                        }
                    ],
                },
            ),
            **_errors("401", "403"),
        },
    },
    "post /admin/api/v1/dead-letters/{kind}/{row_id}/retry": {
        "security": TOKEN,
        "responses": {
            "200": _ok("Back in the queue", {"kind": "backfill-day", "id": 3, "status": "pending"}),
            **_errors("401", "403", "404", "409"),
        },
    },
    "get /admin/api/v1/backfills": {
        "security": TOKEN,
        "responses": {
            "200": _ok("Backfill runs, newest first", [BACKFILL]),
            **_errors("401", "403"),
        },
    },
    "get /admin/api/v1/backfills/{backfill_id}": {
        "security": TOKEN,
        "responses": {"200": _ok("One backfill", BACKFILL), **_errors("401", "403", "404")},
    },
    "get /admin/api/v1/audit": {
        "security": TOKEN,
        "parameters": [
            {"name": name, "in": "query", "schema": {"type": "string"}}
            for name in ("actor", "object_type", "object_id", "since", "until")
        ],
        "responses": {
            "200": _ok(
                "The audit log, newest first",
                [
                    {
                        "at": "2026-11-30T09:00:00+00:00",
                        "actor": "ann",
                        "action": "save",
                        "object_type": "payers",
                        "object_id": "payers",
                        "detail": {"version": 4, "reason": "UHC adopted CQ/CO"},
                    }
                ],
            ),
            **_errors("400", "401", "403"),
        },
    },
}


class OperationDocs(BasePlugin):
    """Adds each operation's security, body, responses and examples as it is registered."""

    def init_spec(self, spec: APISpec) -> None:
        for name, scheme in SECURITY_SCHEMES.items():
            spec.components.security_scheme(name, scheme)
        spec.components.schema("ErrorBody", ERROR_SCHEMA)
        for _, name, description, example in ERRORS:
            spec.components.response(
                name,
                {
                    "description": description,
                    "content": {
                        JSON: {
                            "schema": {"$ref": "#/components/schemas/ErrorBody"},
                            "example": example,
                        }
                    },
                },
            )

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **_: Any
    ) -> None:
        for method, operation in (operations or {}).items():
            extra = OPERATIONS.get(f"{method} {path}")
            if extra is None:
                continue
            extra = dict(extra)
            operation["parameters"] = [
                *operation.get("parameters", ()),
                *extra.pop("parameters", ()),
            ]
            responses = extra.pop("responses")
            operation["responses"] = {
                k: v for k, v in operation.get("responses", {}).items() if k != "default"
            } | responses
            operation.update(extra)


def asset(name: str) -> Response:
    """A file of the Swagger UI distribution the reference page loads (served by us: no CDN)."""
    return send_from_directory(str(swagger_ui_path), name, max_age=86400)
