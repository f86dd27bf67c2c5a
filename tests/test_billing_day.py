"""The billing day: a patient's visits of one date decided together, whichever triggers it."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import responses

from fhir_mappings.chargeitem import charge_item
from plugin.commands import main as cli
from plugin.config.files import Settings
from plugin.gateway.client import FhirClient
from plugin.gateway.gather import Gatherer
from plugin.pipeline.billing_day import DaySource, WriteMode, decide_gathered, run_day
from plugin.pipeline.stages import render_context
from plugin.rules.decision import Decision
from plugin.rules.lines import LineStatus
from tests import builders

MORNING = "2026-11-02T08:00:00-05:00"
AFTERNOON = "2026-11-02T14:00:00-05:00"
OT_ROLE = "225X00000X"
WHEN = datetime(2026, 11, 2, 18, 0, tzinfo=timezone(timedelta(hours=-5)))
LINE = "Patient/p1/2026-11-02/PT/Organization/clinic/97110"


def two_visits(
    first: list[dict[str, Any]], second: list[dict[str, Any]], **afternoon: Any
) -> list[dict[str, Any]]:
    """A clean morning visit e1 and an afternoon visit e2 of Patient/p1 on 2026-11-02."""
    am = builders.complete_record(*first, visit=builders.encounter("e1", MORNING, 2))
    pm = [builders.encounter("e2", AFTERNOON, 2, **afternoon), *second]
    pm += [builders.observation(f"obs-{p['id']}", p["id"]) for p in second]
    return am + pm


def pt(pid: str, code: str, start: str, minutes: int | None, encounter: str) -> dict[str, Any]:
    return builders.procedure(pid, code, start, minutes, encounter_id=encounter)


def lines(decision: Decision) -> dict[str, tuple[int, int, str]]:
    return {ln.code: (ln.units, ln.minutes, ln.status.value) for ln in decision.lines}


@pytest.mark.parametrize(("am", "pm", "units"), [(10, 10, 1), (5, 4, 1), (20, 20, 3)])
def test_timed_minutes_are_totalled_over_the_days_visits(
    settings: Settings, am: int, pm: int, units: int
) -> None:
    resources = two_visits(
        [pt("a1", "97110", "2026-11-02T08:10:00-05:00", am, "e1")],
        [pt("b1", "97110", "2026-11-02T14:10:00-05:00", pm, "e2")],
    )
    for trigger in ("e1", "e2"):  # either visit's trigger decides the same day
        decision = decide_gathered(settings, resources, trigger)
        assert [v.encounter for v in decision.visits] == ["Encounter/e1", "Encounter/e2"]
        (line,) = decision.lines
        assert (line.units, line.minutes, line.status) == (units, am + pm, LineStatus.BILLABLE)
        assert [s.reference for s in line.services] == ["Procedure/a1", "Procedure/b1"]
        assert line.key == "Patient/p1/2026-11-02/PT/Organization/clinic/97110"


def test_a_line_is_in_the_context_of_the_first_visit_that_counts_it(settings: Settings) -> None:
    resources = two_visits(
        [pt("a1", "97140", "2026-11-02T08:10:00-05:00", 12, "e1")],
        [
            pt("b1", "97110", "2026-11-02T14:10:00-05:00", 12, "e2"),
            pt("b2", "97140", "2026-11-02T14:30:00-05:00", 8, "e2"),
        ],
    )
    decision = decide_gathered(settings, resources, "e2")
    ctx = render_context(settings, WHEN, "notification")
    by_code = {ln.code: charge_item(ln, decision, ctx) for ln in decision.lines}
    assert by_code["97110"]["context"] == {"reference": "Encounter/e2"}
    assert "supportingInformation" not in by_code["97110"]
    assert by_code["97140"]["context"] == {"reference": "Encounter/e1"}
    assert by_code["97140"]["supportingInformation"] == [{"reference": "Encounter/e2"}]
    assert [s["reference"] for s in by_code["97140"]["service"]] == ["Procedure/a1", "Procedure/b2"]


def test_pt_in_the_morning_and_ot_in_the_afternoon_are_counted_apart(settings: Settings) -> None:
    resources = two_visits(
        [pt("a1", "97110", "2026-11-02T08:10:00-05:00", 10, "e1")],
        [
            builders.procedure(
                "b1", "97530", "2026-11-02T14:10:00-05:00", 10, role=OT_ROLE, encounter_id="e2"
            )
        ],
    )
    decision = decide_gathered(settings, resources, "e1")
    assert {(ln.discipline.value, ln.code, ln.units) for ln in decision.lines} == {
        ("PT", "97110", 1),
        ("OT", "97530", 1),
    }
    assert {ln.modifiers for ln in decision.lines} == {("GP",), ("GO",)}


def test_an_unfinished_visit_waits_but_the_trigger_always_counts(settings: Settings) -> None:
    resources = two_visits(
        [pt("a1", "97110", "2026-11-02T08:10:00-05:00", 5, "e1")],
        [pt("b1", "97110", "2026-11-02T14:10:00-05:00", 4, "e2")],
        status="in-progress",
    )
    alone = decide_gathered(settings, resources, "e1")
    assert [v.encounter for v in alone.visits] == ["Encounter/e1"]
    assert lines(alone) == {"97110": (0, 5, "not-billable")}
    both = decide_gathered(settings, resources, "e2")  # e2's own trigger: the day again
    assert lines(both) == {"97110": (1, 9, "billable")}


def test_a_visit_hold_reaches_only_the_lines_its_visit_counts(settings: Settings) -> None:
    ot = builders.procedure(
        "b1", "97530", "2026-11-02T14:10:00-05:00", 10, role=OT_ROLE, encounter_id="e2"
    )
    resources = two_visits(
        [pt("a1", "97110", "2026-11-02T08:10:00-05:00", 10, "e1")], [ot], diagnosis=[]
    )
    decision = decide_gathered(settings, resources, "e1")
    status = {ln.code: (ln.status.value, [h.code for h in ln.holds]) for ln in decision.lines}
    assert status == {
        "97110": ("billable", []),
        "97530": ("planned", ["diagnosis-missing"]),
    }


def test_a_service_without_time_in_another_visit_holds_the_days_pool(settings: Settings) -> None:
    resources = two_visits(
        [pt("a1", "97110", "2026-11-02T08:10:00-05:00", 20, "e1")],
        [pt("b1", "97112", None, None, "e2")],
    )
    decision = decide_gathered(settings, resources, "e1")
    assert {ln.code: ln.status.value for ln in decision.lines} == {
        "97110": "planned",
        "97112": "planned",
    }
    (line,) = [ln for ln in decision.lines if ln.code == "97110"]
    assert [h.resource for h in line.holds] == ["Procedure/b1"]


def test_overlapping_time_is_found_across_the_days_visits(settings: Settings) -> None:
    resources = two_visits(
        [pt("a1", "97110", "2026-11-02T09:40:00-05:00", 30, "e1")],
        [pt("b1", "97112", "2026-11-02T10:00:00-05:00", 20, "e2")],
    )
    resources[-3]["period"] = {"start": MORNING, "end": "2026-11-02T11:00:00-05:00"}
    decision = decide_gathered(settings, resources, "e1")
    overlaps = [f for f in decision.findings if f.code == "time-overlap"]
    assert {f.resource for f in overlaps} == {"Procedure/a1", "Procedure/b1"}


def test_a_file_decides_each_day_once_and_reports_each_line_under_its_context(
    tmp_path: Path, capsys: Any
) -> None:
    resources = two_visits(
        [pt("a1", "97110", "2026-11-02T08:10:00-05:00", 5, "e1")],
        [pt("b1", "97110", "2026-11-02T14:10:00-05:00", 4, "e2")],
    )
    path = tmp_path / "day.json"
    path.write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": r} for r in resources],
            }
        )
    )
    out, report = tmp_path / "out.json", tmp_path / "report.json"
    code = cli.main(["process", "--bundle", str(path), "--out", str(out), "--report", str(report)])
    assert code == 0, capsys.readouterr().err
    body = json.loads(report.read_text())
    first, second = body["encounters"]
    assert (first["encounter"], second["encounter"]) == ("Encounter/e1", "Encounter/e2")
    assert [(ln["code"], ln["units"], ln["minutes"]) for ln in first["lines"]] == [("97110", 1, 9)]
    assert second["lines"] == []
    assert first["billing_day"]["encounters"] == ["Encounter/e1", "Encounter/e2"]
    assert (body["summary"]["visits"], body["summary"]["billing_days"]) == (2, 1)
    items = [
        e["resource"]
        for e in json.loads(out.read_text())["entry"]
        if e["resource"]["resourceType"] == "ChargeItem"
    ]
    assert [(i["quantity"]["value"], i["context"]["reference"]) for i in items] == [
        (1, "Encounter/e1")
    ]


def test_the_samples_afternoon_sessions_share_their_patients_day(
    tmp_path: Path, settings: Settings
) -> None:
    from datetime import datetime as dt

    from plugin.pipeline.files import OfflineOutputs, process_file
    from plugin.sample import SampleSpec, as_transaction, generate

    resources = list(generate(SampleSpec(visits=12, seed=4, problem_rate=0.0, second_visits=0.5)))
    encounters = {r["id"]: r for r in resources if r["resourceType"] == "Encounter"}
    afternoon = [e for e in encounters if e.endswith("-pm")]
    assert afternoon
    for pm in afternoon:
        am = encounters[pm.removesuffix("-pm")]
        assert encounters[pm]["subject"] == am["subject"]
        assert encounters[pm]["period"]["start"][:10] == am["period"]["start"][:10]
        assert encounters[pm]["period"]["start"] > am["period"]["end"]
    path = tmp_path / "clinic.json"
    path.write_text(json.dumps(as_transaction(resources)))
    summary = process_file(str(path), settings, OfflineOutputs(), dt.now().astimezone())
    assert summary.visits == len(encounters)
    assert summary.days == len(encounters) - len(afternoon)


@responses.activate
def test_a_line_another_run_created_meanwhile_is_read_again_and_brought_up_to_date(
    settings: Settings,
) -> None:
    """Two triggers of one day at once: the other run saw only the morning and wrote its line
    after we read the day, so our conditional create matched it (200, not 201). We read the
    day again and update that line to what the whole day comes to."""
    base = "https://ehr.example.org/fhir"
    day = two_visits(
        [pt("a1", "97110", "2026-11-02T08:10:00-05:00", 5, "e1")],
        [pt("b1", "97110", "2026-11-02T14:10:00-05:00", 4, "e2")],
    )
    theirs = {
        "resourceType": "ChargeItem",
        "id": "ci1",
        "meta": {"versionId": "1"},
        "status": "not-billable",
        "identifier": [
            {"system": f"{settings.extension_base}/NamingSystem/charge-line", "value": LINE}
        ],
        "quantity": {"value": 0},
    }
    responses.get(f"{base}/metadata", json={"resourceType": "CapabilityStatement", "rest": []})
    responses.get(f"{base}/Encounter/e2", json=day[-3])
    for resources in (day, [*day, theirs]):
        responses.get(
            f"{base}/Encounter",
            json={"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]},
        )
    history = re.compile(
        f"{base}/(CarePlan|ChargeItem|Procedure|Observation|DocumentReference|ServiceRequest|Communication)"
    )
    responses.get(history, json={"resourceType": "Bundle", "type": "searchset"})  # none earlier
    ok = {"resourceType": "Bundle", "type": "transaction-response"}
    responses.post(base, json={**ok, "entry": [{"response": {"status": "200 OK"}}] * 2})
    responses.post(base, json={**ok, "entry": [{"response": {"status": "200 OK"}}] * 2})
    gatherer = Gatherer(FhirClient(base))
    run = run_day(settings, "e2", DaySource(gatherer), WriteMode.WRITE, WHEN, "notification")
    posts = [json.loads(c.request.body) for c in responses.calls if c.request.method == "POST"]
    assert len(posts) == 2
    first, second = (p["entry"][0] for p in posts)
    assert first["request"]["method"] == "POST"  # a create: nothing was there when we read
    assert second["request"] == {"method": "PUT", "url": "ChargeItem/ci1", "ifMatch": 'W/"1"'}
    assert second["resource"]["quantity"] == {"value": 1}  # 5 + 4 minutes: the whole day
    assert run.written
    assert run.attempts == 2


def test_a_late_evening_visit_counts_on_the_date_it_was_written_with(settings: Settings) -> None:
    """21:00 at -05:00 is the next day in UTC; the date of service is the visit's own date."""
    late = "2026-11-02T21:00:00-05:00"
    resources = two_visits(
        [pt("a1", "97112", "2026-11-02T08:10:00-05:00", 10, "e1")],
        [pt("b1", "97112", "2026-11-02T21:10:00-05:00", 10, "e2")],
    )
    resources[-3]["period"] = {"start": late, "end": "2026-11-02T23:00:00-05:00"}
    decision = decide_gathered(settings, resources, "e1")
    assert [v.encounter for v in decision.visits] == ["Encounter/e1", "Encounter/e2"]
    assert lines(decision) == {"97112": (1, 20, "billable")}


@responses.activate
def test_a_listing_longer_than_the_page_cap_is_an_error_not_a_silent_part() -> None:
    from plugin.gateway.auth import NoAuth
    from plugin.gateway.client import ClientOptions
    from plugin.pipeline.billing_day import ListingCapped, days_between

    base = "https://ehr.example.org/fhir"
    page = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Encounter", "id": "e1", "status": "finished"}}],
        "link": [{"relation": "next", "url": f"{base}/Encounter?page=2"}],
    }
    responses.get(re.compile(rf"{re.escape(base)}/Encounter\?.*"), json=page)
    client = FhirClient(base, NoAuth(), ClientOptions(page_cap=2))
    with pytest.raises(ListingCapped, match="stopped at the page cap"):
        days_between(Gatherer(client), "2026-11-01", "2026-11-30")
