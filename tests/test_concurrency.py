"""One-on-one across patients: the cases of tests/cases/concurrency.yaml decided as a file, and
the EHR path (one search for the performers' other services; a failed search writes nothing)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import responses
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st
from marshmallow import Schema, fields, validate

from fhir_mappings.assemble import VisitAssembler
from plugin.config.files import Settings
from plugin.gateway.client import FhirClient
from plugin.gateway.gather import WANTED, Gatherer
from plugin.pipeline.billing_day import DaySource, WriteMode, run_day
from plugin.pipeline.stages import decide, translate_tables
from plugin.rules.day import days_of
from plugin.rules.visit import Severity
from tests import builders
from tests.case_schema import load_cases

DAY = "2026-11-02"
BASE = "https://ehr.example.org/fhir"


class ServiceSchema(Schema):
    code = fields.String(required=True)
    start = fields.String(required=True)
    minutes = fields.Integer(required=True, strict=True)
    performer = fields.String(load_default="pt1")


class ExpectSchema(Schema):
    held = fields.List(fields.String(), required=True)
    suggested = fields.String()


class CaseSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=10))
    payer = fields.String(load_default="MEDICARE-B")
    patients = fields.Dict(
        keys=fields.String(), values=fields.List(fields.Nested(ServiceSchema)), required=True
    )
    expect = fields.Nested(ExpectSchema, required=True)


CASES = load_cases("concurrency.yaml", CaseSchema())


def _patient_record(patient: str, services: list[dict[str, Any]], payer: str) -> list[Any]:
    """A complete record of one patient's visit, every id made the patient's own."""
    procedures = []
    for n, spec in enumerate(services, start=1):
        resource = builders.procedure(
            f"{patient}-proc{n}",
            spec["code"],
            f"{DAY}T{spec['start']}:00-05:00",
            spec["minutes"],
            encounter_id=f"{patient}-e1",
        )
        resource["performer"] = [
            builders.performer(f"Practitioner/{spec['performer']}", "225100000X")
        ]
        procedures.append(resource)
    record = builders.complete_record(*procedures, visit=builders.encounter(f"{patient}-e1"))
    text = json.dumps(record)
    for kind in ("Patient", "Condition", "Goal", "Coverage", "CarePlan", "Observation"):
        text = text.replace(f'"{kind}/', f'"{kind}/{patient}-').replace(
            f'"resourceType": "{kind}", "id": "', f'"resourceType": "{kind}", "id": "{patient}-'
        )
    out: list[Any] = json.loads(text)
    for resource in out:
        if resource["resourceType"] == "Coverage":
            resource["payor"][0]["identifier"]["value"] = payer
    return out


def _decide_file(case: dict[str, Any], settings: Settings) -> dict[str, Any]:
    assembler = VisitAssembler(translate_tables(settings))
    for patient, services in case["patients"].items():
        for resource in _patient_record(patient, services, case["payer"]):
            assembler.add(resource)
    return {day[0].patient: decide(settings, day) for day in days_of(assembler.visits())}


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(case: dict[str, Any], settings: Settings) -> None:
    decisions = _decide_file(case, settings)
    held = []
    for patient, decision in decisions.items():
        found = [f for f in decision.findings if f.code == "concurrent-patients"]
        if found:
            held.append(patient.split("/")[-1].split("-")[0])  # Patient/p2-p1 → p2
            assert all(f.severity is Severity.HOLD for f in found)
            assert {f.suggested_code for f in found} == {case["expect"]["suggested"]}
            assert all(ln.status.value == "planned" for ln in decision.lines if ln.units)
            assert "treated another patient in the same minutes" in found[0].message
        else:
            assert all(f.code != "concurrent-patients" for f in decision.findings)
    assert sorted(held) == sorted(case["expect"]["held"]), case["name"]


def _serve_day(record: list[Any], params: tuple[str, ...] = ("performer", "date")) -> None:
    every = {
        "searchInclude": [v for n, v, _ in WANTED if n.startswith("_include")],
        "searchRevInclude": [v for n, v, _ in WANTED if n.startswith("_revinclude")],
    }
    types = [{"type": "Encounter", "searchParam": [{"name": "_id"}], **every}]
    types.append({"type": "Procedure", "searchParam": [{"name": p} for p in params]})
    responses.get(
        f"{BASE}/metadata",
        json={"resourceType": "CapabilityStatement", "rest": [{"resource": types}]},
    )
    encounter = next(r for r in record if r["resourceType"] == "Encounter")
    responses.get(f"{BASE}/Encounter/{encounter['id']}", json=encounter)
    responses.get(
        f"{BASE}/Encounter",
        json={"resourceType": "Bundle", "entry": [{"resource": r} for r in record]},
    )


WHEN = datetime(2026, 11, 2, 18, 0, tzinfo=timezone(timedelta(hours=-5)))


@responses.activate
def test_against_the_ehr_one_search_finds_another_patients_service(settings: Settings) -> None:
    mine = _patient_record(
        "p1", [{"code": "97110", "start": "09:00", "minutes": 20, "performer": "pt1"}], "MEDICARE-B"
    )
    theirs = _patient_record(
        "p2", [{"code": "97112", "start": "09:10", "minutes": 20, "performer": "pt1"}], "MEDICARE-B"
    )
    _serve_day(mine)
    other = next(r for r in theirs if r["resourceType"] == "Procedure")
    own = next(r for r in mine if r["resourceType"] == "Procedure")
    responses.get(
        f"{BASE}/Procedure",
        json={"resourceType": "Bundle", "entry": [{"resource": own}, {"resource": other}]},
    )
    run = run_day(
        settings, "p1-e1", DaySource(Gatherer(FhirClient(BASE))), WriteMode.PLAN, WHEN, "t"
    )
    (search,) = [c.request.url for c in responses.calls if "/Procedure?performer" in c.request.url]
    query = parse_qs(urlparse(search).query)
    assert query["performer"] == ["Practitioner/pt1"]
    assert query["date"] == ["ge2026-11-01", "le2026-11-03"]
    (finding,) = [f for f in run.decision.findings if f.code == "concurrent-patients"]
    assert "Procedure/p2-proc1" in finding.message
    assert run.decision.lines[0].status.value == "planned"


@responses.activate
def test_a_failed_search_for_the_performers_services_writes_nothing(settings: Settings) -> None:
    mine = _patient_record(
        "p1", [{"code": "97110", "start": "09:00", "minutes": 20, "performer": "pt1"}], "MEDICARE-B"
    )
    _serve_day(mine)
    responses.get(
        f"{BASE}/Procedure", status=400, json={"resourceType": "OperationOutcome", "issue": []}
    )
    run = run_day(
        settings,
        "p1-e1",
        DaySource(Gatherer(FhirClient(BASE))),
        WriteMode.WRITE,
        WHEN,
        "t",
        report_write_errors=True,
    )
    assert not run.written
    assert "performers' other services" in (run.error or "")
    assert not [c for c in responses.calls if c.request.method == "POST"]


def test_a_day_decided_without_the_performers_other_services_says_it_was_not_checked(
    settings: Settings,
) -> None:
    from plugin.pipeline.billing_day import decide_gathered

    record = _patient_record(
        "p1", [{"code": "97110", "start": "09:00", "minutes": 20, "performer": "pt1"}], "COMM-AMA"
    )
    decision = decide_gathered(settings, record, "p1-e1")  # no EHR to ask (a hook alone)
    texts = [e.text for e in decision.explanation]
    assert any(t.startswith("One-on-one across patients was not checked") for t in texts)
    assert not [f for f in decision.findings if f.code == "concurrent-patients"]
    in_a_file = _decide_file({"patients": {"p1": [{"code": "97110", "start": "09:00",
                                                   "minutes": 20, "performer": "pt1"}]},
                              "payer": "COMM-AMA"}, settings)  # fmt: skip
    (decided,) = in_a_file.values()
    assert not any("was not checked" in e.text for e in decided.explanation)


@responses.activate
@pytest.mark.parametrize("refusal", ["not listed", "400"])
def test_an_ehr_that_cannot_search_procedures_by_performer_leaves_it_unchecked_and_writes(
    settings: Settings, refusal: str
) -> None:
    mine = _patient_record(
        "p1", [{"code": "97110", "start": "09:00", "minutes": 20, "performer": "pt1"}], "COMM-AMA"
    )
    _serve_day(mine, ("subject",) if refusal == "not listed" else ("performer", "date"))
    responses.get(f"{BASE}/Procedure", status=400, json={"resourceType": "OperationOutcome"})
    responses.post(BASE, json={"resourceType": "Bundle", "type": "transaction-response"})
    run = run_day(
        settings, "p1-e1", DaySource(Gatherer(FhirClient(BASE))), WriteMode.WRITE, WHEN, "t",
        report_write_errors=True,
    )  # fmt: skip
    assert run.error is None
    assert run.written
    searched = [c for c in responses.calls if "/Procedure?performer" in c.request.url]
    assert len(searched) == (0 if refusal == "not listed" else 1)
    texts = [e.text for e in run.decision.explanation]
    assert any(t.startswith("One-on-one across patients was not checked") for t in texts)


def _pairwise_counts(spans: list[tuple[int, int]]) -> dict[int, int]:
    """The definition: two services overlap when they share at least one whole minute."""
    return {
        i: sum(
            1 for j, (b, lb) in enumerate(spans) if j != i and min(a + la, b + lb) - max(a, b) >= 1
        )
        for i, (a, la) in enumerate(spans)
    }


@examples(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 120), st.integers(1, 40)), min_size=2, max_size=9))
def test_one_performers_overlaps_across_patients_agree_with_the_pairwise_definition(
    spans: list[tuple[int, int]],
) -> None:
    """One patient each, one therapist: each patient is held exactly when one of their minutes
    is another's, and the finding counts every such service (named up to three)."""
    from plugin.config.files import load_settings

    case = {
        "payer": "MEDICARE-B",
        "patients": {
            f"p{i}": [
                {
                    "code": "97110",
                    "start": f"{9 + start // 60:02d}:{start % 60:02d}",
                    "minutes": length,
                    "performer": "pt1",
                }
            ]
            for i, (start, length) in enumerate(spans)
        },
    }
    decisions = _decide_file(case, load_settings({}))
    expected = _pairwise_counts(spans)
    for patient, decision in decisions.items():
        i = int(patient.split("/")[-1].split("-")[0].removeprefix("p"))
        found = [f for f in decision.findings if f.code == "concurrent-patients"]
        if not expected[i]:
            assert found == [], (i, spans)
            continue
        (finding,) = found
        more = expected[i] - 3
        named = min(expected[i], 3)
        assert finding.message.count("both by Practitioner/pt1") == named, (finding.message, spans)
        assert (f" and {more} more." in finding.message) is (more > 0), (finding.message, spans)


def test_a_day_over_the_procedure_limit_is_refused_before_the_ehr_is_asked_for_more(
    settings: Settings,
) -> None:
    """The limit is checked as soon as the day is assembled: the colleagues' search and the
    history (and the checks whose cost grows with them) never run for a refused day."""
    from plugin.errors import VisitTooLarge
    from plugin.pipeline.billing_day import decide_gathered

    class Untouchable:
        error = None

        def history(self, *_: Any) -> None:
            raise AssertionError("history read for a day over the limit")

        def colleagues(self, *_: Any) -> None:
            raise AssertionError("colleagues read for a day over the limit")

    services = [
        {
            "code": "97110",
            "start": f"{9 + n // 60:02d}:{n % 60:02d}",
            "minutes": 20,
            "performer": "pt1",
        }
        for n in range(settings.service.max_procedures + 1)
    ]
    record = _patient_record("p1", services, "MEDICARE-B")
    with pytest.raises(VisitTooLarge):
        decide_gathered(settings, record, "p1-e1", Untouchable())  # type: ignore[arg-type]
