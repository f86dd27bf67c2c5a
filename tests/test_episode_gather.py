"""The patient's history read from the EHR for the episode rules: one batch of searches; a
failed read means the day is decided but not written; a type the EHR does not offer is said
not checked (never taken as an empty history)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import responses

from plugin.config.files import Settings
from plugin.gateway.client import FhirClient
from plugin.gateway.gather import Gatherer
from plugin.pipeline.billing_day import DayRun, DaySource, WriteMode, run_day
from tests import builders

BASE = "https://ehr.example.org/fhir"
WHEN = datetime(2026, 11, 2, 18, 0, tzinfo=timezone(timedelta(hours=-5)))


def _serve(
    types: list[str],
    batch: bool,
    resources: list[dict[str, Any]],
    params: dict[str, list[str]] | None = None,
) -> None:
    """The EHR: its CapabilityStatement (the types, each searched by `_id` or by `params`),
    the encounter, the day's search, and no other patient's procedures when asked apart."""
    from plugin.gateway.gather import WANTED

    every = {  # every include the day's search asks for: that search is one request
        "searchInclude": [v for n, v, _ in WANTED if n.startswith("_include")]
        + ["Observation:performer", "DocumentReference:author"],  # the reports' writers
        "searchRevInclude": [v for n, v, _ in WANTED if n.startswith("_revinclude")]
        + ["Provenance:target"],  # the signatures of plans of care
    }
    rest: dict[str, Any] = {
        "resource": [
            {
                "type": t,
                "searchParam": [{"name": n} for n in (params or {}).get(t, ["_id"])],
                **(every if t == "Encounter" else {}),
            }
            for t in types
        ]
    }
    if batch:
        rest["interaction"] = [{"code": "transaction"}, {"code": "batch"}]
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement", "rest": [rest]})
    responses.get(f"{BASE}/Encounter/e1", json=resources[0])
    responses.get(
        f"{BASE}/Encounter",
        json={"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]},
    )
    # the performers' services for other patients (one-on-one check): none
    responses.get(f"{BASE}/Procedure", json={"resourceType": "Bundle", "entry": []})


def _answer_batch(answers: list[dict[str, Any]]) -> None:
    """The EHR's batch-response: each search's searchset, in the order asked, all 200 OK."""
    responses.post(
        BASE,
        json={
            "resourceType": "Bundle",
            "type": "batch-response",
            "entry": [{"resource": a, "response": {"status": "200 OK"}} for a in answers],
        },
    )


def _record() -> list[dict[str, Any]]:
    record = builders.complete_record(builders.procedure("p1", "97110", minutes=30))
    return [r for r in record if r["resourceType"] != "CarePlan"]  # the plan is in the history


@responses.activate
def test_the_history_is_read_in_one_batch_and_decides_the_day(settings: Settings) -> None:
    everything = ["Encounter", "CarePlan", "ChargeItem", "Procedure", "Observation"]
    _serve([*everything, "DocumentReference"], True, _record())
    plan = builders.care_plan()
    searchset = {"resourceType": "Bundle", "type": "searchset"}
    answers = [{**searchset, "entry": []} for _ in range(6)]
    answers[1]["entry"] = [{"resource": plan}]  # CarePlan?subject=…
    _answer_batch(answers)
    run = run_day(settings, "e1", DaySource(Gatherer(FhirClient(BASE))), WriteMode.PLAN, WHEN, "t")
    (post,) = [json.loads(c.request.body) for c in responses.calls if c.request.method == "POST"]
    assert post["type"] == "batch"
    urls = [e["request"]["url"] for e in post["entry"]]
    assert [u.split("?")[0] for u in urls] == [
        "Encounter", "CarePlan", "ChargeItem", "Procedure", "Observation", "DocumentReference"
    ]  # fmt: skip
    assert "occurrence=ge2026-01-01&occurrence=lt2026-11-02" in urls[2]
    (line,) = run.decision.lines
    assert line.status.value == "billable"  # the plan of care came with the history


@responses.activate
def test_a_failed_history_read_decides_the_day_and_writes_nothing(settings: Settings) -> None:
    _serve(["Encounter", "CarePlan", "ChargeItem"], True, _record())
    responses.post(BASE, status=400, json={"resourceType": "OperationOutcome", "issue": []})
    run = run_day(
        settings,
        "e1",
        DaySource(Gatherer(FhirClient(BASE))),
        WriteMode.WRITE,
        WHEN,
        "t",
        report_write_errors=True,
    )
    assert not run.written
    assert run.error is not None
    assert "history" in run.error
    said = " ".join(e.text for e in run.decision.explanation)
    assert "not checked" in said
    posts = [c for c in responses.calls if c.request.method == "POST"]
    assert len(posts) == 1  # the history batch; no transaction


@responses.activate
def test_a_type_the_ehr_does_not_offer_is_not_checked_rather_than_taken_as_empty(
    settings: Settings,
) -> None:
    _serve(["Encounter", "ChargeItem"], False, _record())  # no CarePlan search, no batch
    responses.get(f"{BASE}/ChargeItem", json={"resourceType": "Bundle", "type": "searchset"})
    run = run_day(settings, "e1", DaySource(Gatherer(FhirClient(BASE))), WriteMode.PLAN, WHEN, "t")
    (line,) = run.decision.lines
    assert line.status.value == "billable"
    said = " ".join(e.text for e in run.decision.explanation)
    assert "does not offer CarePlan searches: the plan of care is not checked" in said
    gets = [c.request.url for c in responses.calls if c.request.method == "GET"]
    assert any("/ChargeItem?subject=" in u for u in gets)  # searches one by one: no batch
    assert not any("/CarePlan?" in u for u in gets)


def _history_answers(encounters: list[dict[str, Any]], reports: list[dict[str, Any]]) -> None:
    """The history batch's answer: the plan, the earlier encounters, the reports found by the
    Observation search (with what it included)."""
    searchset = {"resourceType": "Bundle", "type": "searchset"}
    answers: list[dict[str, Any]] = [{**searchset, "entry": []} for _ in range(6)]
    answers[0]["entry"] = [{"resource": e} for e in encounters]
    answers[1]["entry"] = [{"resource": builders.care_plan(start="2026-10-16")}]
    answers[4]["entry"] = [{"resource": r} for r in reports]
    _answer_batch(answers)


TEN_DAYS = ["16", "19", "20", "21", "22", "23", "26", "27", "28", "29"]


def _eleventh_day_after_a_note(settings: Settings, performer: str, taxonomy: str) -> DayRun:
    """Day 11 of a PT period whose only report is an Observation of 2026-10-27 written by
    `performer`, whose role (`taxonomy`) comes as an included PractitionerRole."""
    everything = ["Encounter", "CarePlan", "ChargeItem", "Procedure", "Observation"]
    _serve([*everything, "DocumentReference"], True, _record())
    earlier = [
        builders.encounter(f"earlier{d}", start=f"2026-10-{d}T08:00:00-05:00", hours=1)
        for d in TEN_DAYS
    ]
    report = {
        "resourceType": "Observation",
        "id": "note1",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
        "effectiveDateTime": "2026-10-27T17:00:00-05:00",
        "performer": [{"reference": performer}],
    }
    role = {  # included by the search: the writer's role
        "resourceType": "PractitionerRole",
        "id": "writer-role",
        "practitioner": {"reference": "Practitioner/writer"},
        "code": [{"coding": [{"system": builders.NUCC, "code": taxonomy}]}],
    }
    _history_answers(earlier, [report, role])
    return run_day(settings, "e1", DaySource(Gatherer(FhirClient(BASE))), WriteMode.PLAN, WHEN, "t")


@responses.activate
def test_the_reports_writers_are_read_with_them_and_an_assistants_report_does_not_count(
    settings: Settings,
) -> None:
    run = _eleventh_day_after_a_note(settings, "Practitioner/writer", "225200000X")
    (post,) = [json.loads(c.request.body) for c in responses.calls if c.request.method == "POST"]
    urls = {e["request"]["url"].split("?")[0]: e["request"]["url"] for e in post["entry"]}
    assert "&_include=Observation:performer" in urls["Observation"]
    assert "&_revinclude:iterate=PractitionerRole:practitioner" in urls["Observation"]
    assert "&_include=Procedure:performer" in urls["Procedure"]
    assert "&_include=DocumentReference:author" in urls["DocumentReference"]
    assert "authenticator" not in urls["DocumentReference"]  # not listed: not asked for
    (line,) = run.decision.lines
    assert line.status.value == "planned"
    (overdue,) = [f for f in run.decision.findings if f.code == "progress-report-overdue"]
    assert "treatment day 11" in overdue.message
    assert "Observation/note1 of 2026-10-27, written by an assistant" in overdue.message
    assert "§220.3 D" in overdue.source


@responses.activate
def test_the_same_report_with_the_therapists_role_closes_the_period(settings: Settings) -> None:
    run = _eleventh_day_after_a_note(settings, "PractitionerRole/writer-role", "225100000X")
    (line,) = run.decision.lines
    assert line.status.value == "billable"
    assert not [f for f in run.decision.findings if f.code.startswith("progress-report")]


@responses.activate
def test_a_signed_plan_document_read_with_the_history_certifies_the_plan(
    settings: Settings,
) -> None:
    everything = ["Encounter", "CarePlan", "ChargeItem", "Procedure", "Observation"]
    _serve([*everything, "DocumentReference"], True, _record())
    searchset = {"resourceType": "Bundle", "type": "searchset"}
    answers: list[dict[str, Any]] = [{**searchset, "entry": []} for _ in range(6)]
    answers[1]["entry"] = [{"resource": builders.care_plan(certified=None)}]  # no extension
    document = {
        "resourceType": "DocumentReference",
        "id": "pocdoc1",
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "18776-5"}]},
        "subject": {"reference": "Patient/p1"},
        "date": "2026-10-29T10:00:00-05:00",
        "authenticator": {"reference": "Practitioner/md1"},
        "context": {"related": [{"reference": "CarePlan/poc1"}]},
        "content": [{"attachment": {"url": "Binary/pocdoc1"}}],
    }
    role = {
        "resourceType": "PractitionerRole",
        "id": "md1-role",
        "practitioner": {"reference": "Practitioner/md1"},
        "specialty": [{"coding": [{"system": builders.NUCC, "code": "208100000X"}]}],
    }
    answers[5]["entry"] = [{"resource": document}, {"resource": role}]
    _answer_batch(answers)
    run = run_day(settings, "e1", DaySource(Gatherer(FhirClient(BASE))), WriteMode.PLAN, WHEN, "t")
    (post,) = [json.loads(c.request.body) for c in responses.calls if c.request.method == "POST"]
    urls = {e["request"]["url"].split("?")[0]: e["request"]["url"] for e in post["entry"]}
    assert "&_revinclude=Provenance:target" in urls["CarePlan"]
    assert "&_revinclude=Provenance:target" in urls["DocumentReference"]
    assert "18776-5" in urls["DocumentReference"]
    (line,) = run.decision.lines
    assert line.status.value == "billable"
    said = " ".join(e.text for e in run.decision.explanation)
    assert "certified on 2026-10-29 (DocumentReference/pocdoc1, authenticated by" in said


@responses.activate
def test_the_colleagues_search_rides_in_the_history_batch(settings: Settings) -> None:
    """A Medicare day from an EHR that takes a batch: the day's search, then one batch with the
    history and the performers' other procedures — no separate Procedure search."""
    kinds = ["Encounter", "CarePlan", "ChargeItem", "Procedure", "Observation", "DocumentReference"]
    _serve(kinds, True, _record(), params={"Procedure": ["performer", "date"]})
    searchset = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    answers = [dict(searchset) for _ in range(7)]
    answers[1] = {**searchset, "entry": [{"resource": builders.care_plan()}]}
    _answer_batch(answers)
    run = run_day(settings, "e1", DaySource(Gatherer(FhirClient(BASE))), WriteMode.PLAN, WHEN, "t")
    gets = [c.request.url for c in responses.calls if c.request.method == "GET"]
    assert not any("/Procedure?" in u for u in gets)  # no separate colleagues' search
    (post,) = [json.loads(c.request.body) for c in responses.calls if c.request.method == "POST"]
    assert post["entry"][-1]["request"]["url"].startswith("Procedure?performer=Practitioner")
    assert len(responses.calls) == 4  # metadata, the encounter, the day, one batch
    said = " ".join(e.text for e in run.decision.explanation)
    assert "One-on-one across patients was not checked" not in said  # it was, in the batch
    (line,) = run.decision.lines
    assert line.status.value == "billable"


def _prefetched_day_answers(history_failed: bool = False) -> list[dict[str, Any]]:
    """The day's batch answer when the prefetch told the payer and the performers: the day's
    searchset, the six history searches (the plan of care in the CarePlan one), the
    colleagues' search (no other patient)."""
    searchset = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    answers = [
        {**searchset, "entry": [{"resource": r} for r in _record()]},
        *[dict(searchset) for _ in range(6)],
        dict(searchset),
    ]
    answers[2] = {**searchset, "entry": [{"resource": builders.care_plan()}]}
    return answers


KINDS = ["Encounter", "CarePlan", "ChargeItem", "Procedure", "Observation", "DocumentReference"]


@responses.activate
def test_a_prefetched_medicare_day_is_read_with_its_history_and_colleagues_in_one_batch(
    settings: Settings,
) -> None:
    """The hook's path: the prefetch names the payer (the episode rules apply) and the
    performers, so the day's search, the history and the colleagues' search go in one batch
    — one round trip — and decide the day as the separate searches do."""
    _serve(KINDS, True, _record(), params={"Procedure": ["performer", "date"]})
    _answer_batch(_prefetched_day_answers())
    gatherer = Gatherer(FhirClient(BASE))
    run = run_day(settings, "e1", DaySource(gatherer, _record()), WriteMode.PLAN, WHEN, "t")
    (post,) = [json.loads(c.request.body) for c in responses.calls if c.request.method == "POST"]
    urls = [e["request"]["url"] for e in post["entry"]]
    assert [u.split("?")[0] for u in urls] == [
        "Encounter", "Encounter", "CarePlan", "ChargeItem", "Procedure", "Observation",
        "DocumentReference", "Procedure",
    ]  # fmt: skip
    assert "_revinclude=Procedure:encounter" in urls[0]  # the day with its procedures
    assert urls[-1].startswith("Procedure?performer=Practitioner")
    assert [c.request.url for c in responses.calls] == [f"{BASE}/metadata", BASE]
    (post_call,) = [c for c in responses.calls if c.request.method == "POST"]
    assert post_call.request.headers["Prefer"] == "handling=strict"  # unknown params: an error
    (line,) = run.decision.lines
    assert line.status.value == "billable"  # the plan of care came in the day's batch
    said = " ".join(e.text for e in run.decision.explanation)
    assert "One-on-one across patients was not checked" not in said


@responses.activate
def test_a_failed_history_in_the_days_batch_is_asked_again_on_its_own(
    settings: Settings,
) -> None:
    _serve(KINDS, True, _record(), params={"Procedure": ["performer", "date"]})
    failed = _prefetched_day_answers()
    responses.post(
        BASE,
        json={
            "resourceType": "Bundle",
            "type": "batch-response",
            "entry": [
                {"resource": a, "response": {"status": "500" if i == 2 else "200 OK"}}
                for i, a in enumerate(failed)
            ],
        },
    )
    _answer_batch(_prefetched_day_answers()[1:])  # the history and colleagues, asked again
    run = run_day(
        settings, "e1", DaySource(Gatherer(FhirClient(BASE)), _record()), WriteMode.PLAN, WHEN, "t"
    )
    posts = [json.loads(c.request.body) for c in responses.calls if c.request.method == "POST"]
    assert len(posts) == 2
    assert posts[1]["entry"][0]["request"]["url"].startswith("Encounter?subject=Patient")
    assert "status=finished" in posts[1]["entry"][0]["request"]["url"]  # the history's
    (line,) = run.decision.lines
    assert line.status.value == "billable"


FORBIDDEN = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "forbidden", "diagnostics": "no access to Encounter"}],
}


@responses.activate
def test_a_failed_days_search_in_the_batch_decides_the_prefetch_alone(settings: Settings) -> None:
    _serve(KINDS, True, _record(), params={"Procedure": ["performer", "date"]})
    answers = _prefetched_day_answers()
    responses.post(
        BASE,
        json={
            "resourceType": "Bundle",
            "type": "batch-response",
            "entry": [
                {"response": {"status": "403 Forbidden", "outcome": FORBIDDEN}},
                *({"resource": a, "response": {"status": "200 OK"}} for a in answers[1:]),
            ],
        },
    )
    run = run_day(
        settings,
        "e1",
        DaySource(Gatherer(FhirClient(BASE)), _record()),
        WriteMode.WRITE,
        WHEN,
        "t",
        report_write_errors=True,
    )
    assert run.alone
    assert not run.written
    assert "no access to Encounter" in str(run.error)
    assert "403" in str(run.error)


@responses.activate
def test_without_a_batch_the_prefetched_day_is_read_by_searches_one_after_another(
    settings: Settings,
) -> None:
    _serve(KINDS, False, _record(), params={"Procedure": ["performer", "date"]})
    searchset = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    for kind in ("CarePlan", "ChargeItem", "Observation", "DocumentReference"):
        answer = {"resource": builders.care_plan()} if kind == "CarePlan" else None
        responses.get(f"{BASE}/{kind}", json={**searchset, "entry": [answer] if answer else []})
    run = run_day(
        settings, "e1", DaySource(Gatherer(FhirClient(BASE)), _record()), WriteMode.PLAN, WHEN, "t"
    )
    assert not [c for c in responses.calls if c.request.method == "POST"]
    gets = [c.request.url.split("?")[0].removeprefix(BASE + "/") for c in responses.calls]
    assert gets[:2] == ["metadata", "Encounter"]  # the day's search first, on its own
    assert "Procedure" in gets  # the colleagues' search, apart
    (line,) = run.decision.lines
    assert line.status.value == "billable"


@responses.activate
def test_known_servers_read_a_capability_statement_once_per_ttl() -> None:
    from plugin.gateway.gather import KnownServers

    now = [0.0]
    known = KnownServers(ttl=60, clock=lambda: now[0])
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement", "rest": []})
    for _ in range(3):  # a hook call's own Gatherer each time (the call's token)
        Gatherer(FhirClient(BASE), known).supported()
    assert len(responses.calls) == 1
    now[0] = 61.0
    Gatherer(FhirClient(BASE), known).supported()
    assert len(responses.calls) == 2  # an hour later (here a minute): read again
