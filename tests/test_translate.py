"""Reading visits from FHIR: minutes, roles, disciplines, payers, codes, and reported problems."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_mappings.assemble import VisitAssembler
from plugin.config.files import Settings
from plugin.pipeline.stages import translate_tables
from plugin.rules.model import Discipline, Method
from plugin.rules.visit import Role, Severity, Visit
from tests.builders import (
    MINUTES_URL,
    PAYER_ID,
    SNOMED,
    condition,
    coverage,
    encounter,
    performer,
    procedure,
)


def assemble(settings: Settings, *resources: dict[str, Any]) -> tuple[list[Visit], list[Any]]:
    """The visits of the resources, and the findings that belong to no visit."""
    assembler = VisitAssembler(translate_tables(settings))
    for resource in resources:
        assembler.add(resource)
    found = list(assembler.visits())
    return found, assembler.problems


def visits(settings: Settings, *resources: dict[str, Any]) -> list[Visit]:
    return assemble(settings, *resources)[0]


def one(settings: Settings, *resources: dict[str, Any]) -> Visit:
    (visit,) = visits(settings, encounter(), condition(), coverage(), *resources)
    return visit


def codes(items: Any) -> set[str]:
    return {f.code for f in items}


# --- minutes, in the order of docs/architecture.md "Minutes" -------------------------------


def test_minutes_come_from_the_performed_period(settings: Settings) -> None:
    service = one(settings, procedure("p1", minutes=23)).services[0]
    assert (service.minutes, service.minutes_source) == (23, "performed-period")
    assert service.findings == ()
    assert service.date == "2026-11-02"


def test_the_configured_extension_wins_over_periods(settings: Settings) -> None:
    ext = [
        {
            "url": MINUTES_URL,
            "valueDuration": {
                "value": 12,
                "unit": "min",
                "system": "http://unitsofmeasure.org",
                "code": "min",
            },
        }
    ]
    service = one(settings, procedure("p1", minutes=40, extension=ext)).services[0]
    assert (service.minutes, service.minutes_source) == (12, "extension")


def test_an_extension_in_hours_is_converted(settings: Settings) -> None:
    ext = [{"url": MINUTES_URL, "valueQuantity": {"value": 0.5, "code": "h"}}]
    assert one(settings, procedure("p1", minutes=None, extension=ext)).services[0].minutes == 30


def test_fractional_minutes_are_counted_whole_and_warned(settings: Settings) -> None:
    ext = [{"url": MINUTES_URL, "valueDuration": {"value": 7.5, "code": "min"}}]
    service = one(settings, procedure("p1", minutes=None, extension=ext)).services[0]
    assert service.minutes == 7
    assert codes(service.findings) == {"minutes-fractional"}


def test_performer_periods_count_shared_time_once(settings: Settings) -> None:
    together = procedure("p1", start=None, minutes=None)
    together["performer"] = [
        performer(
            "Practitioner/pt1",
            "225100000X",
            ("2026-11-02T09:00:00-05:00", "2026-11-02T09:20:00-05:00"),
        ),
        performer(
            "Practitioner/pta1",
            "225200000X",
            ("2026-11-02T09:10:00-05:00", "2026-11-02T09:30:00-05:00"),
        ),
    ]
    service = one(settings, together).services[0]
    assert (service.minutes, service.minutes_source) == (30, "performer-period")
    assert [p.minutes for p in service.performers] == [20, 20]
    assert [p.role for p in service.performers] == [Role.PT, Role.PTA]


@pytest.mark.parametrize(
    ("change", "code", "element"),
    [
        ({"performedPeriod": None}, "time-missing", "Procedure.performed[x]"),
        (
            {"performedPeriod": None, "performedDateTime": "2026-11-02T09:00:00-05:00"},
            "time-missing",
            "Procedure.performed[x]",
        ),
        (
            {
                "performedPeriod": {
                    "start": "2026-11-02T09:30:00-05:00",
                    "end": "2026-11-02T09:00:00-05:00",
                }
            },
            "time-invalid",
            "Procedure.performedPeriod.end",
        ),
        (
            {"performedPeriod": {"start": "2026-11-02T09:30:00-05:00"}},
            "time-incomplete",
            "Procedure.performedPeriod.end",
        ),
        (
            {"performedPeriod": {"start": "yesterday", "end": "2026-11-02T09:00:00-05:00"}},
            "time-unreadable",
            "Procedure.performedPeriod",
        ),
        (
            {"performedPeriod": {"start": "2026-11-02T09:00:00", "end": "2026-11-02T09:20:00"}},
            "time-unreadable",
            "Procedure.performedPeriod",
        ),
    ],
)
def test_time_problems_hold_a_timed_line_and_say_where(
    settings: Settings, change, code, element
) -> None:
    resource = procedure("p1")
    for key, value in change.items():
        if value is None:
            resource.pop(key, None)
        else:
            resource[key] = value
    service = one(settings, resource).services[0]
    assert service.minutes is None
    (problem,) = service.findings
    assert (problem.code, problem.severity, problem.element) == (code, Severity.HOLD, element)
    assert problem.resource == "Procedure/p1"
    assert problem.fix
    assert problem.source


def test_an_untimed_code_needs_no_time(settings: Settings) -> None:
    service = one(settings, procedure("p1", code="97162", minutes=None)).services[0]
    assert service.findings == ()


# --- codes ---------------------------------------------------------------------------------


def test_a_snomed_coded_procedure_is_mapped_to_cpt(settings: Settings) -> None:
    service = one(settings, procedure("p1", code="61502001", system=SNOMED)).services[0]
    assert service.code == "97110"


def test_a_direct_cpt_coding_wins_over_a_mapped_one(settings: Settings) -> None:
    resource = procedure("p1", code="97112")
    resource["code"]["coding"].append({"system": SNOMED, "code": "61502001"})  # maps to 97110
    assert one(settings, resource).services[0].code == "97112"


def test_an_unmapped_procedure_is_a_hold_with_its_codes(settings: Settings) -> None:
    service = one(settings, procedure("p1", code="999999", system=SNOMED)).services[0]
    assert service.code is None
    (problem,) = service.findings
    assert problem.code == "code-unmapped"
    assert "http://snomed.info/sct|999999" in problem.message


def test_codings_that_map_to_different_codes_are_a_conflict(settings: Settings) -> None:
    resource = procedure("p1", code="61502001", system=SNOMED)
    resource["code"]["coding"].append({"system": SNOMED, "code": "7334004"})  # → 97112
    service = one(settings, resource).services[0]
    assert service.code is None
    assert codes(service.findings) == {"code-conflict"}


def test_a_cpt_code_outside_the_catalog_is_not_billed_directly(settings: Settings) -> None:
    service = one(settings, procedure("p1", code="99213")).services[0]
    assert service.code is None
    assert codes(service.findings) == {"code-unmapped"}


@pytest.mark.parametrize("status", ["not-done", "entered-in-error", "in-progress"])
def test_procedures_not_completed_are_reported_not_billed(settings: Settings, status: str) -> None:
    service = one(settings, procedure("p1", status=status)).services[0]
    assert not service.billable_status
    (problem,) = service.findings
    assert (problem.code, problem.severity) == ("procedure-not-completed", Severity.INFO)
    assert status in problem.message


# --- who and which discipline ----------------------------------------------------------------


def test_the_role_comes_from_the_practitioner_role_when_the_function_is_missing(
    settings: Settings,
) -> None:
    role = {
        "resourceType": "PractitionerRole",
        "id": "r1",
        "practitioner": {"reference": "Practitioner/ot1"},
        "code": [
            {"coding": [{"system": "http://nucc.org/provider-taxonomy", "code": "225X00000X"}]}
        ],
    }
    resource = procedure("p1", code="97530", role=None)
    resource["performer"] = [performer("Practitioner/ot1", None)]
    service = one(settings, role, resource).services[0]
    assert service.performers[0].role is Role.OT
    assert service.discipline is Discipline.OT  # 97530 is PT or OT: the performer decides


def test_an_unknown_role_is_a_warning(settings: Settings) -> None:
    service = one(settings, procedure("p1", role=None)).services[0]
    assert codes(service.findings) == {"performer-role-unknown"}
    assert service.findings[0].severity is Severity.WARN


def test_a_single_discipline_code_decides_the_discipline(settings: Settings) -> None:
    service = one(
        settings, procedure("p1", code="97166", role="225100000X", minutes=None)
    ).services[0]
    assert service.discipline is Discipline.OT


def test_the_service_type_decides_when_code_and_performer_do_not(settings: Settings) -> None:
    service_type = {
        "coding": [
            {
                "system": "https://theracharge.example/fhir/CodeSystem/therapy-discipline",
                "code": "OT",
            }
        ]
    }
    (visit,) = visits(
        settings,
        encounter(serviceType=service_type),
        condition(),
        coverage(),
        procedure("p1", code="97110", role=None),
    )
    assert visit.services[0].discipline is Discipline.OT


# --- payer, diagnoses, visit --------------------------------------------------------------


def test_the_payer_table_sets_the_method(settings: Settings) -> None:
    (visit,) = visits(
        settings, encounter(), condition(), coverage(payer_value="COMM-AMA"), procedure("p1")
    )
    assert (visit.method, visit.payer, visit.coverage) == (
        Method.AMA,
        "example-commercial-ama",
        "Coverage/cov1",
    )
    assert "AMA" in visit.method_reason or "per code" in visit.method_reason


def test_the_payer_is_found_through_the_payor_organization(settings: Settings) -> None:
    org = {
        "resourceType": "Organization",
        "id": "uhc",
        "identifier": [{"system": PAYER_ID, "value": "UHC-COMM"}],
    }
    cov = coverage(payor=[{"reference": "Organization/uhc"}])
    (visit,) = visits(settings, encounter(), condition(), cov, org, procedure("p1"))
    assert (visit.payer, visit.method) == ("united-commercial", Method.CMS)


def test_no_coverage_bills_by_the_default_method_and_says_so(settings: Settings) -> None:
    (visit,) = visits(settings, encounter(), condition(), procedure("p1"))
    assert visit.method is Method.CMS
    assert codes(visit.findings) == {"coverage-missing"}
    assert "No Coverage" in visit.method_reason


def test_an_unknown_payer_bills_by_the_default_and_warns(settings: Settings) -> None:
    (visit,) = visits(
        settings, encounter(), condition(), coverage(payer_value="NOPE"), procedure("p1")
    )
    assert visit.method is Method.CMS
    assert codes(visit.findings) == {"payer-unknown"}


def test_the_primary_coverage_in_force_on_the_day_is_used(settings: Settings) -> None:
    expired = coverage("old", payer_value="COMM-AMA", order=1, period={"end": "2026-10-31"})
    secondary = coverage("sec", payer_value="COMM-AMA", order=2)
    primary = coverage("pri", payer_value="MEDICARE-B", order=1, period={"start": "2026-01-01"})
    (visit,) = visits(
        settings, encounter(), condition(), expired, secondary, primary, procedure("p1")
    )
    assert visit.coverage == "Coverage/pri"


def test_diagnoses_list_icd10cm_first_and_report_missing_conditions(settings: Settings) -> None:
    cond = condition("c1", (SNOMED, "239873007"), ("http://hl7.org/fhir/sid/icd-10-cm", "M17.11"))
    enc = encounter(
        diagnosis=[
            {"condition": {"reference": "Condition/c1"}, "rank": 1},
            {"condition": {"reference": "Condition/gone"}, "rank": 2},
        ]
    )
    (visit,) = visits(settings, enc, cond, coverage(), procedure("p1"))
    assert visit.diagnoses[0].codings[0].code == "M17.11"
    assert codes(visit.findings) == {"reference-unresolved"}


def test_bundle_full_urls_and_absolute_references_resolve(settings: Settings) -> None:
    enc = encounter()
    del enc["id"]
    proc = procedure("p1")
    proc["encounter"] = {"reference": "urn:uuid:0c7c1d9e-4c5f-4d43-9f0f-2a1b7d3c8e11"}
    cond = condition()
    enc["diagnosis"] = [
        {"condition": {"reference": "https://ehr.example.org/fhir/Condition/c1/_history/3"}}
    ]
    assembler = VisitAssembler(translate_tables(settings))
    assembler.add(enc, "urn:uuid:0c7c1d9e-4c5f-4d43-9f0f-2a1b7d3c8e11")
    for resource in (cond, coverage(), proc):
        assembler.add(resource)
    (visit,) = list(assembler.visits())
    assert [s.reference for s in visit.services] == ["Procedure/p1"]
    assert visit.diagnoses[0].reference == "Condition/c1"


def test_a_procedure_whose_encounter_is_absent_is_reported_outside_any_visit(
    settings: Settings,
) -> None:
    found, problems = assemble(
        settings,
        encounter(),
        condition(),
        coverage(),
        procedure("p1"),
        procedure("p2", encounter_id="elsewhere"),
    )
    assert [s.reference for s in found[0].services] == ["Procedure/p1"]
    (problem,) = problems
    assert (problem.code, problem.resource) == ("encounter-missing", "Procedure/p2")


def test_a_broken_resource_in_one_visit_leaves_the_others_alone(settings: Settings) -> None:
    bad = encounter("e2", start="not a date")
    found = visits(
        settings,
        encounter(),
        bad,
        condition(),
        coverage(),
        procedure("p1"),
        procedure("p2", encounter_id="e2"),
    )
    first, second = found
    assert first.findings == ()
    assert first.date_of_service == "2026-11-02"
    assert "resource-invalid" in codes(second.findings)
    assert second.date_of_service == "2026-11-02"  # taken from its procedure instead


def test_an_encounter_with_no_date_at_all_is_held(settings: Settings) -> None:
    enc = encounter()
    del enc["period"]
    (visit,) = visits(
        settings,
        enc,
        condition(),
        coverage(),
        procedure(
            "p1",
            start=None,
            minutes=None,
            extension=[{"url": MINUTES_URL, "valueDuration": {"value": 20, "code": "min"}}],
        ),
    )
    assert "date-missing" in codes(visit.findings)
