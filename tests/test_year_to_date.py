"""KX in a file run: the patient's earlier days of the year, as the run decided them, count
towards the estimate besides the file's ChargeItems (plugin.pipeline.year_to_date)."""

from __future__ import annotations

import io
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from plugin.config.files import Settings
from plugin.pipeline.files import OfflineOutputs, process_file
from tests import builders

FROZEN = datetime(2026, 11, 2, 18, 0, tzinfo=timezone(timedelta(hours=-5)))
PT = "225100000X"


def _weekdays(count: int, first: date = date(2026, 9, 1)) -> list[date]:
    days, day = [], first
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def _year(count: int, payer: str = "MEDICARE-B") -> list[dict[str, Any]]:
    """`count` weekday visits of one patient from 2026-09-01, each 60 minutes of 97110 (4 units,
    $116 at the shipped fee), a PT progress report every 5th day, one certified plan."""
    days = _weekdays(count)
    resources: list[dict[str, Any]] = [
        builders.condition(),
        builders.coverage(payer_value=payer),
        builders.goal(),
        builders.care_plan(start=days[0].isoformat(), certified=days[0].isoformat()),
        {
            "resourceType": "PractitionerRole",
            "id": "pt1-role",
            "practitioner": {"reference": "Practitioner/pt1"},
            "code": [{"coding": [{"system": builders.NUCC, "code": PT}]}],
        },
    ]
    for n, day in enumerate(days, start=1):
        start = f"{day.isoformat()}T09:00:00-05:00"
        resources += [
            builders.encounter(f"e{n}", start=start, hours=2),
            builders.procedure(f"p{n}", "97110", start, 60, encounter_id=f"e{n}"),
            builders.observation(f"obs{n}", f"p{n}"),
        ]
        if n % 5 == 0:
            resources.append(
                {
                    "resourceType": "Observation",
                    "id": f"report{n}",
                    "status": "final",
                    "subject": {"reference": "Patient/p1"},
                    "code": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
                    "effectiveDateTime": f"{day.isoformat()}T17:00:00-05:00",
                    "performer": [{"reference": "Practitioner/pt1"}],
                }
            )
    return resources


def _charge(cid: str, day: str, amount: float) -> dict[str, Any]:
    return {
        "resourceType": "ChargeItem",
        "id": cid,
        "status": "billed",
        "code": {"coding": [{"system": builders.CPT, "code": "97110"}]},
        "subject": {"reference": "Patient/p1"},
        "occurrenceDateTime": day,
        "quantity": {"value": 4},
        "priceOverride": {"value": amount, "currency": "USD"},
        "extension": [
            {
                "url": "https://theracharge.example/fhir/StructureDefinition/charge-modifier",
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
                            "code": "GP",
                        }
                    ]
                },
            }
        ],
    }


def _run(tmp_path: Path, resources: list[dict[str, Any]], settings: Settings) -> dict[str, Any]:
    path = tmp_path / "visits.json"
    bundle = {"resourceType": "Bundle", "type": "collection"}
    path.write_text(json.dumps(bundle | {"entry": [{"resource": r} for r in resources]}))
    report = io.BytesIO()
    process_file(str(path), settings, OfflineOutputs(report=report), FROZEN)
    encounters = json.loads(report.getvalue())["encounters"]
    return {e["encounter"]: e for e in encounters}


def _kx(entry: dict[str, Any]) -> tuple[list[str], set[str]]:
    (line,) = entry["lines"]
    return line["modifiers"], {p["code"] for p in entry["problems"] if p["code"].startswith("kx")}


def test_the_years_earlier_days_in_the_file_bring_a_later_day_past_the_threshold(
    tmp_path: Path, settings: Settings
) -> None:
    by_encounter = _run(tmp_path, _year(22), settings)
    assert _kx(by_encounter["Encounter/e1"]) == (["GP"], set())
    assert _kx(by_encounter["Encounter/e19"]) == (["GP"], set())  # 19 × $116 = $2,204: < 90 %
    assert _kx(by_encounter["Encounter/e20"]) == (["GP"], {"kx-threshold-near"})  # $2,320
    assert _kx(by_encounter["Encounter/e22"]) == (["GP", "KX"], {"kx-threshold-exceeded"})
    said = " ".join(e["text"] for e in by_encounter["Encounter/e22"]["explanation"])
    assert "$2,436.00 on 0 earlier charge(s) read and 21 line(s) of earlier days decided" in said


def test_a_file_out_of_date_order_estimates_each_day_the_same(
    tmp_path: Path, settings: Settings
) -> None:
    resources = _year(22)
    by_day: dict[int, list[dict[str, Any]]] = {}
    for resource in resources[5:]:  # each day's encounter, procedure, measure (and report)
        number = int("".join(ch for ch in resource["id"] if ch.isdigit()))
        by_day.setdefault(number, []).append(resource)
    order = [22, 4, 20, 1, 11, *(n for n in range(1, 23) if n not in (22, 4, 20, 1, 11))]
    shuffled = resources[:5] + [r for n in order for r in by_day[n]]
    in_order = _run(tmp_path, resources, settings)
    (tmp_path / "other").mkdir()
    out_of_order = _run(tmp_path / "other", shuffled, settings)
    assert list(out_of_order)[:2] == ["Encounter/e22", "Encounter/e4"]  # the file's order
    for encounter, entry in in_order.items():
        assert _kx(out_of_order[encounter]) == _kx(entry), encounter


def test_the_runs_decision_of_a_day_wins_over_a_charge_of_the_same_day(
    tmp_path: Path, settings: Settings
) -> None:
    resources = _year(19)
    # day 1 billed before at $1,000 (replaced by the run's $116); a day outside the file adds
    resources += [_charge("old1", "2026-09-01", 1000.0), _charge("old2", "2026-08-28", 100.0)]
    by_encounter = _run(tmp_path, resources, settings)
    said = " ".join(e["text"] for e in by_encounter["Encounter/e19"]["explanation"])
    # 18 earlier days × $116 + the August charge = $2,188 (not $3,072 with day 1 twice)
    assert "$2,188.00 on 1 earlier charge(s) read and 18 line(s)" in said


def test_a_payer_without_the_kx_threshold_is_untouched(tmp_path: Path, settings: Settings) -> None:
    by_encounter = _run(tmp_path, _year(22, payer="UHC-COMM"), settings)
    assert _kx(by_encounter["Encounter/e22"]) == (["GP"], set())
