"""The examples /openapi.json shows: each checked against its schema, and each request example
sent to the server, by tests/web/test_openapi.py."""

from __future__ import annotations

from typing import Any

CONCEPT_MAP: dict[str, Any] = {
    "resourceType": "ConceptMap",
    "url": "https://hospital.example.org/fhir/ConceptMap/rehab-charge-master",
    "status": "active",
    "group": [
        {
            "source": "https://hospital.example.org/fhir/CodeSystem/rehab-charge-master",
            "target": "http://www.ama-assn.org/go/cpt",
            "element": [
                {
                    "code": "REHAB-4410",
                    "target": [
                        {
                            "code": "97110",
                            "equivalence": "equivalent",
                            "comment": "the rehab charge master's therapeutic exercise",
                        }
                    ],
                }
            ],
        }
    ],
}
MAPPING_PUT = {"reason": "new charge codes", "conceptMap": CONCEPT_MAP}
MAPPINGS = [
    {
        "name": "snomed-therapy.json",
        "version": 1,
        "updated": "2026-11-30T09:00:00+00:00",
        "author": "system",
    }
]
SAVED = {"kind": "payers", "name": "payers", "version": 4}
ROLLBACK = {"version": 1, "reason": "undo the change of 30 November"}
VERSION = {
    "version": 1,
    "author": "system",
    "at": "2026-11-30T09:00:00+00:00",
    "reason": "imported from the shipped configuration at first start",
    "diff": [],
    "deleted": False,
}
VERSIONS = [VERSION]
MAPPING_VERSION = {**VERSION, "content": CONCEPT_MAP}
TRY = {"coding": {"system": "http://snomed.info/sct", "code": "229070002"}}
TRIED = {"code": "97112", "how": "mapped", "detail": "snomed-therapy.json"}
# CMS's practitioner PTP layout (Column 1, Column 2, *, effective, deletion, modifier indicator,
# rationale); the row is one of the CMS file (config/ncci/ptp_practitioner.csv)
NCCI_FILE = (
    "Column 1\tColumn 2\t*=in existence prior to 1996\tEffective Date\tDeletion Date\t"
    "Modifier\tPTP Edit Rationale\n"
    "97530\t97116\t\t19990701\t20191231\t1\tMutually exclusive procedures\n"
)
FEE_CSV = "HCPCS,NON-FACILITY PRICE\n97110,$31.25\n"
HOOK_REQUEST = {
    "hook": "encounter-discharge",
    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "context": {"userId": "Practitioner/pt1", "patientId": "pat-1", "encounterId": "enc-1"},
    "prefetch": {
        "encounter": {
            "resourceType": "Encounter",
            "id": "enc-1",
            "status": "finished",
            "subject": {"reference": "Patient/pat-1"},
            "period": {"start": "2026-11-02T09:00:00-05:00", "end": "2026-11-02T10:00:00-05:00"},
        },
        "procedures": {"resourceType": "Bundle", "type": "searchset", "entry": []},
    },
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
FEEDBACK = {
    "feedback": [
        {
            "card": "card-uuid",
            "outcome": "overridden",
            "overrideReason": {"reason": {"code": "documented-elsewhere"}},
            "outcomeTimestamp": "2026-11-02T18:00:00Z",
        }
    ]
}
DISCOVERY = {
    "services": [
        {
            "hook": "encounter-discharge",
            "id": "therapy-charges",
            "title": "Therapy charge capture",
            "description": "Computes the CPT/HCPCS units of the therapy procedures of the day",
            "prefetch": {"encounter": "Encounter/{{context.encounterId}}"},
        }
    ]
}
REPORT = {
    "encounter": "Encounter/enc-1",
    "lines": [
        {
            "key": "Patient/pat-1/2026-11-02/PT/Organization/clinic/97110",
            "code": "97110",
            "units": 2,
            "modifiers": ["GP"],
            "status": "billable",
        }
    ],
    "problems": [],
    "written": {"sent": True, "created": ["Patient/pat-1/2026-11-02/PT/Organization/clinic/97110"]},
    "dry_run": False,
}
ENCOUNTER = {
    "resourceType": "Encounter",
    "id": "enc-1",
    "status": "finished",
    "meta": {"versionId": "3"},
    "subject": {"reference": "Patient/pat-1"},
    "period": {"start": "2026-11-02T09:00:00-05:00"},
}
NOTIFICATION_BUNDLE = {"resourceType": "Bundle", "type": "history", "entry": []}
READY = {
    "status": "ready",
    "checks": {"settings": "ok", "database": "ok", "notification_worker": "ok"},
}
NOTIFICATIONS = [
    {
        "id": 7,
        "encounter": "Encounter/enc-1",
        "version": "3",
        "status": "failed",
        "attempts": 5,
        "last_error": "the EHR answered HTTP 503",
        "claimed_by": None,
        "received_at": "2026-11-30T09:00:00+00:00",
        "finished_at": "2026-11-30T09:08:00+00:00",
        "next_attempt_at": None,
    }
]
OUTLET_MESSAGES = [
    {
        "control_id": "TC5F0C2A9B41D7E3A0C1",
        "day": "Patient/p1/2026-11-02",
        "state": "refused",
        "attempts": 1,
        "answer": "Rendering provider 1234567893 is not on file",
        "lines": [{"key": "Patient/p1/2026-11-02/PT/Organization/clinic/97110", "credit": False}],
        "created_at": "2026-11-02T18:00:00+00:00",
    }
]
DEAD_LETTERS = {
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
}
REQUEUED = {"kind": "backfill-day", "id": 3, "status": "pending"}
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
AUDIT = [
    {
        "at": "2026-11-30T09:00:00+00:00",
        "actor": "ann",
        "action": "save",
        "object_type": "payers",
        "object_id": "payers",
        "detail": {"version": 4, "reason": "UHC adopted CQ/CO"},
    }
]
