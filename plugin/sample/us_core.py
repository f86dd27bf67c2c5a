"""The sample written as a US Core 6.1 EHR writes it (`theracharge sample --shape us-core`): the
same visits, with the facts in the places such an EHR puts them.

- No NUCC code in `Procedure.performer.function` (a site's own role code, the sample's aide's,
  stays there, as Oracle Health sends its own code set): a performer's role is its
  PractitionerRole's `specialty`
  (NUCC provider taxonomy, must-support in US Core 6.1.0 us-core-practitionerrole) and, for the
  therapists, its `code` (SNOMED CT Care Team Member Function: physiotherapist 36682004,
  occupational therapist 80546007, speech and language therapist 159026005); the assistants'
  occupations have no SNOMED CT equivalent, so they carry the specialty only.
- No certification extension on the CarePlan: the physician's signed plan of care is a
  DocumentReference (LOINC 18776-5 "Plan of care note", `current`, `context.related` the plan,
  `authenticator` the physician) with a Provenance verification signature (ASTM E1762
  1.2.840.10065.1.12.1.5) dated when the plan was certified.
A clean visit of either shape decides the same (tests/test_sample_shapes.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from plugin.jsontypes import Json
from plugin.rules.systems import NPI, NUCC, SNOMED
from plugin.sample.vocabulary import CERTIFIED_URL

SHAPES = ("theracharge", "us-core")
OCCUPATIONS = {"225100000X": "36682004", "225X00000X": "80546007", "235Z00000X": "159026005"}
PLAN_NOTE = ("http://loinc.org", "18776-5", "Plan of care note")
VERIFICATION = ("urn:iso-astm:E1762-95:2013", "1.2.840.10065.1.12.1.5", "Verification Signature")
PHYSICIAN = "Practitioner/referring-md"
PHYSICIAN_TAXONOMY = "208100000X"  # physical medicine and rehabilitation


def _physician() -> list[Json]:
    """The referring physician who certifies the plans."""
    return [
        {
            "resourceType": "Practitioner",
            "id": PHYSICIAN.split("/")[1],
            "identifier": [{"system": NPI, "value": "1588667638"}],
            "name": [{"family": "Referrer", "given": ["Morgan"], "suffix": ["MD"]}],
        },
        {
            "resourceType": "PractitionerRole",
            "id": "role-referring-md",
            "practitioner": {"reference": PHYSICIAN},
            "specialty": [{"coding": [{"system": NUCC, "code": PHYSICIAN_TAXONOMY}]}],
        },
    ]


def us_core(resources: Iterable[Json]) -> Iterator[Json]:
    """The resources as a US Core 6.1 EHR writes them (the module docstring), streamed."""
    first = True
    for resource in resources:
        if first:
            yield from _physician()
            first = False
        kind = resource.get("resourceType")
        if kind == "Procedure":
            for performer in resource.get("performer") or ():
                codings = (performer.get("function") or {}).get("coding") or ()
                if codings and all(c.get("system") == NUCC for c in codings):
                    del performer["function"]  # the taxonomy is on the PractitionerRole
            yield resource
        elif kind == "PractitionerRole":
            taxonomy = [c for concept in resource.pop("code", ()) for c in concept["coding"]]
            resource["specialty"] = [{"coding": taxonomy}]
            occupation = OCCUPATIONS.get(taxonomy[0]["code"]) if taxonomy else None
            if occupation:
                resource["code"] = [{"coding": [{"system": SNOMED, "code": occupation}]}]
            yield resource
        elif kind == "CarePlan":
            yield from _signed_plan(resource)
        else:
            yield resource


def _signed_plan(plan: Json) -> Iterator[Json]:
    """The plan without our extension, and the signed plan document that certifies it."""
    certified = None
    kept = []
    for ext in plan.get("extension") or ():
        if ext.get("url") == CERTIFIED_URL:
            certified = ext.get("valueDate")
        else:
            kept.append(ext)
    if kept:
        plan["extension"] = kept
    else:
        plan.pop("extension", None)
    yield plan
    if certified is None:
        return
    document = f"plan-doc-{plan['id']}"
    when = f"{certified}T16:00:00Z"
    yield {
        "resourceType": "DocumentReference",
        "id": document,
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [dict(zip(("system", "code", "display"), PLAN_NOTE, strict=True))]},
        "subject": plan["subject"],
        "date": when,
        "authenticator": {"reference": PHYSICIAN},
        "context": {"related": [{"reference": f"CarePlan/{plan['id']}"}]},
        "content": [{"attachment": {"contentType": "application/pdf", "title": "Plan of care"}}],
    }
    yield {
        "resourceType": "Provenance",
        "id": f"sig-{document}",
        "target": [{"reference": f"DocumentReference/{document}"}],
        "recorded": when,
        "agent": [{"who": {"reference": PHYSICIAN}}],
        "signature": [
            {
                "type": [dict(zip(("system", "code", "display"), VERIFICATION, strict=True))],
                "when": when,
                "who": {"reference": PHYSICIAN},
                "data": "c2lnbmVk",
            }
        ],
    }
