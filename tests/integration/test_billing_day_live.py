"""The billing day against the sandbox EHR: a patient's visits of one date decided together,
whichever trigger comes, written once, updated when a later visit arrives, never re-billed."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from plugin.config.files import Settings, load_settings
from plugin.gateway.client import FhirClient
from plugin.gateway.gather import Gatherer
from plugin.pipeline.billing_day import DayRun, DaySource, WriteMode, run_day
from plugin.pipeline.hooks import prefetch_from
from plugin.web.app import create_app
from tests import builders
from tests.ehr import Ehr
from tests.helpers.live import SECRET, env_for, ours
from tests.integration.conftest import ENTERED

DAY = "Patient/p1/2026-11-02/PT/Organization/clinic"
MORNING = "2026-11-02T08:00:00-05:00"
AFTERNOON = "2026-11-02T14:00:00-05:00"


def morning(*procedures: dict[str, Any]) -> list[dict[str, Any]]:
    resources = builders.complete_record(*procedures, visit=builders.encounter("e1", MORNING, 2))
    for resource in resources:  # recorded at the visit, as EHRs do: the day's search brings it
        if resource["resourceType"] == "Condition":
            resource["encounter"] = {"reference": "Encounter/e1"}
    return resources


def afternoon(*procedures: dict[str, Any]) -> list[dict[str, Any]]:
    measures = [builders.observation(f"obs-{p['id']}", p["id"]) for p in procedures]
    return [builders.encounter("e2", AFTERNOON, 2), *procedures, *measures]


def pt(pid: str, start: str, minutes: int, encounter: str, **extra: Any) -> dict[str, Any]:
    return builders.procedure(pid, "97110", start, minutes, encounter_id=encounter, **extra)


def put_all(ehr: Ehr, resources: list[dict[str, Any]]) -> None:
    ehr.post(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": r,
                    "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                }
                for r in resources
            ],
        }
    )


def decide(settings: Settings, gatherer: Gatherer, encounter: str, trigger: str = "cli") -> DayRun:
    return run_day(settings, encounter, DaySource(gatherer), WriteMode.WRITE, ENTERED, trigger)


def day_items(ehr: Ehr, settings: Settings) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in ours(ehr, settings).items() if k.startswith("Patient/p1/")}


@pytest.mark.parametrize(("am", "pm", "units"), [(10, 10, 1), (5, 4, 1)])
def test_two_visits_of_one_day_bill_the_days_total(
    ehr: Ehr, live_settings: Settings, gatherer: Gatherer, am: int, pm: int, units: int
) -> None:
    put_all(
        ehr,
        morning(pt("a1", "2026-11-02T08:10:00-05:00", am, "e1"))
        + afternoon(pt("b1", "2026-11-02T14:10:00-05:00", pm, "e2")),
    )
    done = decide(live_settings, gatherer, "e2")
    assert done.written
    (item,) = day_items(ehr, live_settings).values()
    assert item["identifier"][0]["value"] == f"{DAY}/97110"
    assert (item["quantity"]["value"], item["status"]) == (units, "billable")
    assert item["context"] == {"reference": "Encounter/e1"}
    assert item["supportingInformation"] == [{"reference": "Encounter/e2"}]
    assert [s["reference"] for s in item["service"]] == ["Procedure/a1", "Procedure/b1"]
    again = decide(live_settings, gatherer, "e1")  # the other visit's trigger: the same day
    assert not again.written
    assert again.plan is not None
    assert again.plan.unchanged == [f"{DAY}/97110"]


def test_pt_in_the_morning_and_ot_in_the_afternoon_stay_apart(
    ehr: Ehr, live_settings: Settings, gatherer: Gatherer
) -> None:
    ot = builders.procedure(
        "b1", "97530", "2026-11-02T14:10:00-05:00", 10, role="225X00000X", encounter_id="e2"
    )
    put_all(ehr, morning(pt("a1", "2026-11-02T08:10:00-05:00", 10, "e1")) + afternoon(ot))
    decide(live_settings, gatherer, "e1")
    items = day_items(ehr, live_settings)
    assert {k: v["quantity"]["value"] for k, v in items.items()} == {
        f"{DAY}/97110": 1,
        "Patient/p1/2026-11-02/OT/Organization/clinic/97530": 1,
    }


def test_a_later_visit_updates_the_days_line_and_a_billed_line_stays_billed(
    ehr: Ehr, live_settings: Settings, gatherer: Gatherer
) -> None:
    put_all(ehr, morning(pt("a1", "2026-11-02T08:10:00-05:00", 5, "e1")))
    decide(live_settings, gatherer, "e1")
    (first,) = day_items(ehr, live_settings).values()
    assert (first["quantity"]["value"], first["status"]) == (0, "not-billable")
    put_all(ehr, afternoon(pt("b1", "2026-11-02T14:10:00-05:00", 4, "e2")))
    later = decide(live_settings, gatherer, "e2", "notification")
    assert later.plan is not None
    assert (later.plan.updated, later.plan.created) == ([f"{DAY}/97110"], [])
    (now,) = day_items(ehr, live_settings).values()
    assert now["id"] == first["id"]  # the same ChargeItem, a new version
    assert (now["quantity"]["value"], now["status"]) == (1, "billable")
    assert int(now["meta"]["versionId"]) > int(first["meta"]["versionId"])

    billed = {**now, "status": "billed"}  # the billing system took it
    url = f"{ehr.base_url}/ChargeItem/{now['id']}"
    requests.put(url, json=billed, timeout=10).raise_for_status()
    taken = day_items(ehr, live_settings)[f"{DAY}/97110"]["meta"]["versionId"]
    put_all(
        ehr,
        afternoon(
            pt("b1", "2026-11-02T14:10:00-05:00", 4, "e2"),
            pt("b2", "2026-11-02T14:20:00-05:00", 20, "e2"),
        ),
    )
    corrected = decide(live_settings, gatherer, "e2")
    assert corrected.plan is not None
    assert corrected.plan.corrections == [
        f"{DAY}/97110: ChargeItem/{now['id']} is billed and now differs"
    ]
    after = day_items(ehr, live_settings)[f"{DAY}/97110"]
    assert (after["status"], after["meta"]["versionId"]) == ("billed", taken)


def test_per_encounter_charge_items_are_taken_over_in_one_transaction(
    ehr: Ehr, live_settings: Settings, gatherer: Gatherer
) -> None:
    put_all(ehr, morning(pt("a1", "2026-11-02T08:10:00-05:00", 20, "e1")))
    plan = run_day(live_settings, "e1", DaySource(gatherer), WriteMode.PLAN, ENTERED, "cli").plan
    assert plan is not None
    old = copy.deepcopy(plan.entries[0]["resource"])  # as a release before the day wrote it
    old["identifier"][0]["value"] = "e1/2026-11-02/PT/97110"
    FhirClient(ehr.base_url).create("ChargeItem", old)
    gatherer.supported()
    sent = gatherer.client.requests_sent
    done = decide(live_settings, gatherer, "e1")
    # the encounter, its day, the performers' other services (one search), one transaction
    assert gatherer.client.requests_sent - sent == 4
    assert done.plan is not None
    assert (done.plan.voided, done.plan.created) == (["e1/2026-11-02/PT/97110"], [f"{DAY}/97110"])
    items = day_items(ehr, live_settings) | {
        k: v for k, v in ours(ehr, live_settings).items() if k.startswith("e1/")
    }
    assert {k: v["status"] for k, v in items.items()} == {
        "e1/2026-11-02/PT/97110": "entered-in-error",
        f"{DAY}/97110": "billable",
    }


def test_the_hook_a_notification_and_the_cli_converge_on_the_same_charge_items(
    ehr: Ehr, live_settings: Settings, tmp_path: Path, jwks_file: Path, sign: Any
) -> None:
    put_all(
        ehr,
        morning(pt("a1", "2026-11-02T08:10:00-05:00", 10, "e1"))
        + afternoon(pt("b1", "2026-11-02T14:10:00-05:00", 10, "e2")),
    )
    app = create_app(
        load_settings(env_for(ehr, tmp_path, jwks_file, THERACHARGE_WRITE_MODE="direct")),
        start_worker=False,
    )
    state = app.extensions["theracharge"]
    hook = {
        "hook": "encounter-discharge",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": ehr.base_url,
        "context": {"userId": "PractitionerRole/x", "patientId": "p1", "encounterId": "e1"},
        "prefetch": prefetch_from(FhirClient(ehr.base_url), "e1"),
    }
    answer = app.test_client().post(
        "/cds-services/therapy-charges", json=hook, headers={"Authorization": f"Bearer {sign()}"}
    )
    assert answer.status_code == 200, answer.json
    summaries = [c["summary"] for c in answer.json["cards"]]
    assert "Charges (CMS): 97110-GP ×1" in summaries
    assert any(s.startswith("ChargeItems written: 1 created") for s in summaries)
    written = day_items(ehr, live_settings)
    versions = {k: v["meta"]["versionId"] for k, v in written.items()}

    encounter = requests.get(f"{ehr.base_url}/Encounter/e2", timeout=10).json()
    queued = app.test_client().put(
        "/notifications/fhir/Encounter/e2",
        json=encounter,
        headers={"X-TheraCharge-Secret": SECRET},
    )
    assert queued.json == {"queued": True}
    assert state.worker is not None
    state.worker.runtime.gatherer().client.requests_sent = 0  # type: ignore[union-attr]
    assert state.worker.run_once()
    # the day's search and the performers' other services (one search); nothing to write
    assert state.worker.runtime.gatherer().client.requests_sent == 2  # type: ignore[union-attr]
    assert state.store.runs("e2")[0].outcome == "unchanged"

    payers = state.store.config_current("payers", "payers")
    state.store.config_save("payers", "payers", payers.content, "ann", "reviewed", [])  # v2
    cli = subprocess.run(
        [str(Path(sys.executable).with_name("theracharge")), "process", "--encounter", "e1"],
        env={
            **os.environ,
            "THERACHARGE_FHIR_BASE_URL": ehr.base_url,
            "THERACHARGE_INSTANCE_DIR": str(tmp_path / "instance"),  # the service's database
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    body = json.loads(cli.stdout)
    assert body["written"]["sent"] is False
    assert body["written"]["unchanged"] == [f"{DAY}/97110"]
    assert body["configuration"]["catalog"].startswith("sha256-")  # a file
    assert body["configuration"]["payers"] == "v2"  # the service's managed table, as it is now
    assert {k: v["meta"]["versionId"] for k, v in day_items(ehr, live_settings).items()} == versions
    provenance = requests.get(f"{ehr.base_url}/Provenance?_count=50", timeout=10).json()
    ours_ = [
        e["resource"]
        for e in provenance.get("entry", [])
        if any(t["reference"].startswith("ChargeItem/") for t in e["resource"]["target"])
        and "Procedure/a1" in {x["what"]["reference"] for x in e["resource"]["entity"]}
    ]
    (prov,) = ours_
    assert prov["reason"][0]["coding"][0]["code"] == "cds-hook"
    assert any("/configuration/payers/v1" in p for p in prov["policy"])


def test_a_late_evening_visit_joins_its_day_whatever_the_server_compares_in(
    ehr: Ehr, live_settings: Settings, gatherer: Gatherer
) -> None:
    """21:10 at -05:00 is 02:10 the next day in UTC: the day search must still bring it."""
    evening = builders.encounter("e2", "2026-11-02T21:00:00-05:00", 2)
    late = pt("b1", "2026-11-02T21:10:00-05:00", 10, "e2")
    put_all(
        ehr,
        [
            *morning(pt("a1", "2026-11-02T08:10:00-05:00", 10, "e1")),
            evening,
            late,
            builders.observation("obs-b1", "b1"),
        ],
    )
    for trigger in ("e1", "e2"):
        run = decide(live_settings, gatherer, trigger)
        assert [v.encounter for v in run.decision.visits] == ["Encounter/e1", "Encounter/e2"]
    (item,) = day_items(ehr, live_settings).values()
    assert (item["quantity"]["value"], len(item["service"])) == (1, 2)


def _modifiers(item: dict[str, Any]) -> list[str]:
    return [
        e["valueCodeableConcept"]["coding"][0]["code"]
        for e in item.get("extension", [])
        if e["url"].endswith("/charge-modifier")
    ]


def test_the_ncci_edits_reach_the_ehrs_charge_items_and_a_rerun_writes_nothing(
    ehr: Ehr, live_settings: Settings, gatherer: Gatherer
) -> None:
    """One day: 97124 with 97140 (PTP indicator 0), 97537 after 97530 (indicator 1, distinct
    times: XU), 97112 for 75 minutes (MUE 4: one unit held apart)."""
    long_morning = builders.encounter("e1", MORNING, 4)
    put_all(
        ehr,
        builders.complete_record(
            builders.procedure("a1", "97140", "2026-11-02T08:05:00-05:00", 10, encounter_id="e1"),
            builders.procedure("a2", "97124", "2026-11-02T08:15:00-05:00", 10, encounter_id="e1"),
            builders.procedure("a3", "97530", "2026-11-02T08:25:00-05:00", 15, encounter_id="e1"),
            builders.procedure("a4", "97537", "2026-11-02T08:40:00-05:00", 15, encounter_id="e1"),
            builders.procedure("a5", "97112", "2026-11-02T08:55:00-05:00", 75, encounter_id="e1"),
            visit=long_morning,
        ),
    )
    first = decide(live_settings, gatherer, "e1")
    assert first.written
    items = day_items(ehr, live_settings)
    got = {
        key.removeprefix(f"{DAY}/"): (i["status"], i["quantity"]["value"], _modifiers(i))
        for key, i in items.items()
    }
    assert got["97124"][0] == "not-billable"
    assert got["97537"] == ("billable", got["97537"][1], ["GP", "XU"])
    assert got["97112"] == ("billable", 4, ["GP"])
    assert got["97112/mue-excess"] == ("planned", 1, ["GP"])
    again = decide(live_settings, gatherer, "e1")
    assert not again.written
    assert again.plan is not None
    assert again.plan.entries == []


def test_the_assistant_and_episode_edits_reach_the_ehrs_charge_items_and_a_rerun_writes_nothing(
    ehr: Ehr, live_settings: Settings, gatherer: Gatherer
) -> None:
    """Medicare, one day each, the history read from the EHR in one batch: a PTA's and a PT's
    minutes of 97110 (one unit with CQ, one without, the PTA's supervisor named); a patient
    past the KX threshold by an earlier charge of the year (KX on the day's lines); a patient
    on the 11th treatment day without a progress report (held); one with no plan of care
    (held)."""
    # p1: 23 PTA + 13 PT minutes of 97110, the PT a participant of the encounter
    visit = builders.encounter(
        "e1",
        MORNING,
        participant=[
            {
                "type": [{"coding": [{"system": builders.NUCC, "code": "225100000X"}]}],
                "individual": {"reference": "Practitioner/pt1"},
            }
        ],
    )
    pta = builders.procedure("a1", "97110", "2026-11-02T08:10:00-05:00", 23, role="225200000X")
    pta["performer"][0]["actor"]["reference"] = "Practitioner/pta1"
    put_all(
        ehr,
        [
            {"resourceType": "Patient", "id": "p1"},  # the Coverage is found through its patient
            *builders.complete_record(
                pta,
                builders.procedure("a2", "97110", "2026-11-02T08:33:00-05:00", 13),
                visit=visit,
            ),
        ],
    )
    run = decide(live_settings, gatherer, "e1")
    assert run.decision.visit.payer == "medicare-part-b"
    assert run.written
    items = day_items(ehr, live_settings)
    assert {k.removeprefix(f"{DAY}/"): (i["status"], i["quantity"]["value"], _modifiers(i))
            for k, i in items.items()} == {
        "97110": ("billable", 1, ["GP"]),
        "97110/CQ": ("billable", 1, ["GP", "CQ"]),
    }  # fmt: skip
    assert items[f"{DAY}/97110/CQ"]["priceOverride"] == {"value": 24.65, "currency": "USD"}
    actors = {p["actor"]["reference"] for p in items[f"{DAY}/97110/CQ"]["performer"]}
    assert actors == {"Practitioner/pta1", "Practitioner/pt1"}
    assert not decide(live_settings, gatherer, "e1").written

    def patient(pid: str, *extra: dict[str, Any]) -> list[dict[str, Any]]:
        # the goal reaches the procedure through its plan of care (sekmet cannot search Goal)
        record = builders.complete_record(
            builders.procedure(f"{pid}-p", "97110", "2026-11-02T08:10:00-05:00", 30,
                               encounter_id=f"{pid}-e",
                               basedOn=[{"reference": f"CarePlan/{pid}-poc"}]),
            visit=builders.encounter(f"{pid}-e", MORNING),
        )  # fmt: skip
        text = json.dumps(record).replace('"Patient/p1"', f'"Patient/{pid}"')
        # each patient's own therapist: one therapist at 08:10 for all would be concurrent
        text = text.replace('"Practitioner/pt1"', f'"Practitioner/pt-{pid}"')
        for name, kind in (("c1", "Condition"), ("g1", "Goal"), ("cov1", "Coverage")):
            text = text.replace(f'"{kind}/{name}"', f'"{kind}/{pid}-{name}"')
            text = text.replace(f'"id": "{name}"', f'"id": "{pid}-{name}"')
        found = [r for r in json.loads(text) if r["resourceType"] != "CarePlan"]
        return [{"resourceType": "Patient", "id": pid}, *found, *extra]

    def plan(pid: str, start: str) -> dict[str, Any]:
        return dict(builders.care_plan(f"{pid}-poc", start=start, certified=start),
                    subject={"reference": f"Patient/{pid}"})  # fmt: skip

    earlier_charge = {
        "resourceType": "ChargeItem",
        "id": "kx-earlier",
        "status": "billed",
        "code": {"coding": [{"system": builders.CPT, "code": "97110"}]},
        "subject": {"reference": "Patient/kx"},
        "occurrenceDateTime": "2026-10-01",
        "quantity": {"value": 1},
        "priceOverride": {"value": 2450.0, "currency": "USD"},
        "extension": [
            {
                "url": "https://theracharge.example/fhir/StructureDefinition/charge-modifier",
                "valueCodeableConcept": {
                    "coding": [
                        {"system": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
                         "code": "GP"}
                    ]
                },
            }
        ],
    }  # fmt: skip
    earlier_days = [
        dict(
            builders.encounter(f"prog-d{n}", f"2026-10-{day:02d}T08:00:00-05:00", 1),
            subject={"reference": "Patient/prog"},
        )
        for n, day in enumerate((16, 19, 20, 21, 22, 23, 26, 27, 28, 29), start=1)
    ]
    put_all(ehr, patient("kx", plan("kx", "2026-10-26"), earlier_charge))
    put_all(ehr, patient("prog", plan("prog", "2026-10-16"), *earlier_days))
    put_all(ehr, patient("nopoc"))
    for pid in ("kx", "prog", "nopoc"):
        done = decide(live_settings, gatherer, f"{pid}-e")
        assert done.written, pid
    found = {
        key: (i["status"], _modifiers(i), [
            e["valueCoding"]["code"] for e in i.get("extension", [])
            if e["url"].endswith("/hold-reason")
        ])
        for key, i in ours(ehr, live_settings).items()
        if key.split("/")[1] in ("kx", "prog", "nopoc")
    }  # fmt: skip
    clinic = "2026-11-02/PT/Organization/clinic/97110"
    assert found == {
        f"Patient/kx/{clinic}": ("billable", ["GP", "KX"], []),
        f"Patient/prog/{clinic}": ("planned", ["GP"], ["progress-report-overdue"]),
        f"Patient/nopoc/{clinic}": ("planned", ["GP"], ["plan-of-care-missing"]),
    }
    for pid in ("kx", "prog", "nopoc"):
        assert not decide(live_settings, gatherer, f"{pid}-e").written, pid
