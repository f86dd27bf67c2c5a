"""Performer roles read where EHRs write them (fhir_mappings/roles.py): US Core's
PractitionerRole.specialty (NUCC) and code (SNOMED CT), a NUCC specialisation by prefix, the
Practitioner's qualification, the site's practitioner table; two roles of one practitioner;
a role resource of the wrong shape. Every claim case written the US Core way decides as
written today."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import pytest

from fhir_mappings.assemble import VisitAssembler
from plugin.config.files import Settings
from plugin.pipeline.stages import decide, translate_tables
from plugin.rules.decision import Decision
from plugin.rules.payers import PractitionerTable
from plugin.rules.visit import Role, Severity
from tests import builders
from tests.test_claim_cases import CASES, decide_case
from tests.test_claim_cases import _history as claim_history

NUCC = builders.NUCC
SNOMED = "http://snomed.info/sct"
OCCUPATION = {"225100000X": "36682004", "225X00000X": "80546007", "235Z00000X": "159026005"}


def us_core(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same resources as a US Core 6.1 EHR writes them: no performer.function; each
    performer's taxonomy in a PractitionerRole's specialty, the SNOMED CT occupation (where
    there is one) in its code."""
    out = copy.deepcopy(resources)
    roles: dict[str, str] = {}
    for resource in out:
        if resource.get("resourceType") != "Procedure":
            continue
        for performer in resource.get("performer") or ():
            function = performer.pop("function", None)
            if function:
                roles[performer["actor"]["reference"]] = function["coding"][0]["code"]
    for actor, taxonomy in roles.items():
        role: dict[str, Any] = {
            "resourceType": "PractitionerRole",
            "id": f"uscore-{actor.split('/')[1]}",
            "practitioner": {"reference": actor},
            "specialty": [{"coding": [{"system": NUCC, "code": taxonomy}]}],
        }
        if taxonomy in OCCUPATION:
            role["code"] = [{"coding": [{"system": SNOMED, "code": OCCUPATION[taxonomy]}]}]
        out.append(role)
    return out


def _decide(settings: Settings, resources: list[dict[str, Any]], **history: Any) -> Decision:
    assembler = VisitAssembler(translate_tables(settings))
    for resource in resources:
        assembler.add(resource)
    for resource in claim_history(history) if history else ():
        assembler.add_history(resource)
    return decide(settings, tuple(assembler.visits()))


def _lines(decision: Decision) -> Counter[tuple[Any, ...]]:
    return Counter(
        (ln.code, ln.units, ln.modifiers, ln.status.value, str(ln.price)) for ln in decision.lines
    )


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_every_claim_case_written_the_us_core_way_decides_the_same(
    case: dict[str, Any], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = decide_case(case, settings)
    captured: list[list[dict[str, Any]]] = []
    original = VisitAssembler.add

    def add(self: VisitAssembler, resource: dict[str, Any], *rest: Any) -> None:
        captured[-1].append(resource)

    captured.append([])
    monkeypatch.setattr(VisitAssembler, "add", add)
    monkeypatch.setattr("tests.test_claim_cases.decide", lambda *_: None)
    decide_case(case, settings)  # only to capture what the case reads, in order
    monkeypatch.setattr(VisitAssembler, "add", original)
    converted = us_core(captured[-1])
    assert not any(
        "function" in p for r in converted if r["resourceType"] == "Procedure"
        for p in r.get("performer") or ()
    )  # fmt: skip
    assembler = VisitAssembler(translate_tables(settings))
    for resource in converted:
        assembler.add(resource)
    for resource in claim_history(case["history"]):
        assembler.add_history(resource)
    written = decide(settings, tuple(assembler.visits()))
    assert _lines(written) == _lines(today), case["name"]
    codes = sorted(f.code for f in written.findings if f.severity is not Severity.INFO)
    assert codes == sorted(f.code for f in today.findings if f.severity is not Severity.INFO)


def _visit(*performers: tuple[str, str | None], code: str = "97110") -> list[dict[str, Any]]:
    """A clean Medicare visit of one procedure by `performers` (actor, function or None)."""
    procedure = builders.procedure("p1", code, minutes=30)
    procedure["performer"] = [builders.performer(actor, role) for actor, role in performers]
    return builders.complete_record(procedure)


def _role(rid: str, actor: str, specialty: str | None = None, **extra: Any) -> dict[str, Any]:
    role: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": rid,
        "practitioner": {"reference": actor},
    }
    if specialty:
        role["specialty"] = [{"coding": [{"system": NUCC, "code": specialty}]}]
    return role | extra


def _roles_said(decision: Decision) -> str:
    return " ".join(e.text for e in decision.explanation if e.text.startswith("Performer roles"))


def test_an_assistant_named_only_by_a_us_core_specialty_gets_cq(settings: Settings) -> None:
    resources = _visit(("Practitioner/pta9", None))
    resources[0]["participant"] = [{"individual": {"reference": "Practitioner/pt9"}}]
    resources += [
        _role("r-pta", "Practitioner/pta9", "225200000X"),
        _role("r-pt", "Practitioner/pt9", "225100000X"),
    ]
    decision = _decide(settings, resources)
    (line,) = decision.lines
    assert (line.modifiers, line.status.value) == (("GP", "CQ"), "billable")
    said = _roles_said(decision)
    assert "Practitioner/pta9 PTA (PractitionerRole/r-pta.specialty" in said


def test_a_nucc_specialisation_is_read_by_its_taxonomy_prefix(settings: Settings) -> None:
    orthopedic = _role("r1", "Practitioner/pt9", "2251X0800X")  # a physical therapist
    resources = [*_visit(("Practitioner/pt9", None)), orthopedic]
    decision = _decide(settings, resources)
    (line,) = decision.lines
    assert (line.modifiers, line.status.value) == (("GP",), "billable")
    assert "2251X0800X" in _roles_said(decision)


def test_the_snomed_occupation_in_practitionerrole_code_is_read(settings: Settings) -> None:
    role = _role("r1", "Practitioner/ot9")
    role["code"] = [{"coding": [{"system": SNOMED, "code": "80546007"}]}]
    decision = _decide(settings, [*_visit(("Practitioner/ot9", None), code="97535"), role])
    (line,) = decision.lines
    assert line.modifiers == ("GO",)
    assert "PractitionerRole/r1.code" in _roles_said(decision)


def test_the_practitioners_qualification_is_read(settings: Settings) -> None:
    practitioner = {
        "resourceType": "Practitioner",
        "id": "pta9",
        "qualification": [{"code": {"coding": [{"system": NUCC, "code": "225200000X"}]}}],
    }
    resources = _visit(("Practitioner/pta9", None), ("Practitioner/pt1", "225100000X"))
    decision = _decide(settings, [*resources, practitioner])
    assert "Practitioner/pta9 PTA (Practitioner/pta9.qualification" in _roles_said(decision)


def test_the_sites_practitioner_table_names_a_role_by_npi(settings: Settings) -> None:
    practitioner = {
        "resourceType": "Practitioner",
        "id": "pta9",
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
    }
    resources = [*_visit(("Practitioner/pta9", None)), practitioner]
    resources[0]["participant"] = [
        {
            "type": [{"coding": [{"system": NUCC, "code": "225100000X"}]}],
            "individual": {"reference": "Practitioner/pt1"},
        }
    ]
    unknown = _decide(settings, resources)
    assert unknown.lines[0].status.value == "planned"  # role unknown: held for Medicare
    assert "performer-role-unknown" in {h.code for h in unknown.lines[0].holds}
    table = PractitionerTable({"NPI|1234567893": Role.PTA}, "HR file")
    listed = _decide(_with_table(settings, table), resources)
    (line,) = listed.lines
    assert (line.modifiers, line.status.value) == (("GP", "CQ"), "billable")
    assert "the site's practitioner table (NPI 1234567893)" in _roles_said(listed)


def _with_table(settings: Settings, table: PractitionerTable) -> Settings:
    import dataclasses

    return dataclasses.replace(settings, practitioners=table)


def test_two_roles_are_told_apart_by_the_services_discipline(settings: Settings) -> None:
    encounter_type = [
        {
            "coding": [
                {
                    "system": "https://theracharge.example/fhir/CodeSystem/therapy-discipline",
                    "code": "OT",
                }
            ]
        }
    ]
    resources = [
        *_visit(("Practitioner/x9", None)),
        _role("r-pt", "Practitioner/x9", "225100000X"),
        _role("r-ot", "Practitioner/x9", "225X00000X"),
    ]
    resources[0]["serviceType"] = encounter_type[0]
    decision = _decide(settings, resources)
    (line,) = decision.lines
    assert (line.modifiers, line.status.value) == (("GO",), "billable")
    assert "the role of the service's discipline (also PT)" in _roles_said(decision)


def test_a_therapist_who_is_also_an_assistant_of_the_same_discipline_is_held(
    settings: Settings,
) -> None:
    resources = [
        *_visit(("Practitioner/x9", None)),
        _role("r-pt", "Practitioner/x9", "225100000X"),
        _role("r-pta", "Practitioner/x9", "225200000X"),
    ]
    decision = _decide(settings, resources)
    (line,) = decision.lines
    assert line.status.value == "planned"
    (held,) = [f for f in decision.findings if f.code == "performer-role-ambiguous"]
    assert "PractitionerRoles of PT and PTA" in held.message


def test_a_malformed_role_resource_is_a_finding_naming_the_element(settings: Settings) -> None:
    broken = _role("r1", "Practitioner/pta9") | {"specialty": "225200000X"}
    decision = _decide(settings, [*_visit(("Practitioner/pta9", None)), broken])
    (line,) = decision.lines
    assert line.status.value == "planned"
    (unknown,) = [f for f in decision.findings if f.code == "performer-role-unknown"]
    assert "PractitionerRole/r1.specialty is not a list of CodeableConcepts" in unknown.message


ADMIN = {"Authorization": "Bearer admin-token"}


def test_the_admin_api_manages_the_practitioner_table(make_app: Any) -> None:
    from plugin.config.tokens import token_hash

    app = make_app(THERACHARGE_API_TOKENS=f"ann:admin=sha256:{token_hash('admin-token')}")
    client = app.test_client()
    assert client.get("/admin/api/v1/practitioners", headers=ADMIN).json["practitioners"] == []
    table = {
        "source": "Site credentialing records",
        "practitioners": [{"npi": "1234567893", "role": "PTA", "source": "HR file 2026-11"}],
    }
    answer = client.put(
        "/admin/api/v1/practitioners",
        json={"reason": "new assistant", "practitioners": table},
        headers=ADMIN,
    )
    assert answer.status_code == 200, answer.json
    state = app.extensions["theracharge"]
    assert state.settings.practitioners.roles == {"NPI|1234567893": Role.PTA}
    versions = client.get("/admin/api/v1/practitioners/versions", headers=ADMIN).json
    latest = max(versions, key=lambda v: v["version"])
    assert latest["diff"] == [
        {"change": "added", "practitioner": "NPI|1234567893", "before": None, "after": "PTA"}
    ]
    bad = {"practitioners": [{"npi": "12345", "role": "PTA", "source": "x"}]}
    refused = client.put(
        "/admin/api/v1/practitioners", json={"reason": "typo", "practitioners": bad}, headers=ADMIN
    )
    assert refused.status_code == 422
    assert "practitioners" in str(refused.json)
    both = {
        "practitioners": [
            {"npi": "1234567893", "reference": "Practitioner/x", "role": "PT", "source": "x"}
        ]
    }
    refused = client.put(
        "/admin/api/v1/practitioners", json={"reason": "both", "practitioners": both}, headers=ADMIN
    )
    assert refused.status_code == 422
    assert state.settings.practitioners.roles == {"NPI|1234567893": Role.PTA}  # unchanged
