"""What a claim line needs: its diagnoses (the ones its procedures name first, then the
encounter's by rank, ICD-10-CM only, at most four; none held) and its place of service."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

from fhir_mappings.chargeitem import charge_item
from plugin.config.files import Settings
from plugin.pipeline.billing_day import decide_gathered
from plugin.pipeline.stages import render_context
from plugin.rules.systems import ICD10CM, PLACE_OF_SERVICE, SNOMED
from tests import builders

WHEN = datetime(2026, 11, 2, 18, 0, tzinfo=timezone(timedelta(hours=-5)))


def reasons(settings: Settings, resources: list[dict[str, Any]]) -> dict[str, list[str]]:
    decision = decide_gathered(settings, resources, "e1")
    ctx = render_context(settings, WHEN)
    return {
        ln.code: [r["coding"][0]["code"] for r in charge_item(ln, decision, ctx).get("reason", [])]
        for ln in decision.lines
    }


def test_a_procedures_own_diagnosis_comes_first_and_at_most_four_are_listed(
    settings: Settings,
) -> None:
    codes = ["M25.561", "M62.81", "R26.89", "M54.50", "Z96.651"]
    encounter = builders.encounter(
        "e1",
        diagnosis=[{"condition": {"reference": f"Condition/c{i}"}, "rank": i} for i in range(1, 6)],
    )
    conditions = [builders.condition(f"c{i}", (ICD10CM, code)) for i, code in enumerate(codes, 1)]
    own = builders.procedure(
        "p1", "97110", minutes=20, reasonReference=[{"reference": "Condition/c4"}]
    )
    other = builders.procedure("p2", "97140", "2026-11-02T09:30:00-05:00", 15)
    resources = [*builders.complete_record(own, other, visit=encounter), *conditions]
    found = reasons(settings, resources)
    assert found["97110"] == ["M54.50", "M25.561", "M62.81", "R26.89"]
    assert found["97140"][:4] == ["M25.561", "M62.81", "R26.89", "M54.50"]
    assert len(found["97140"]) == 4


def test_a_line_whose_diagnoses_have_no_icd10_code_is_held(settings: Settings) -> None:
    resources = builders.complete_record(builders.procedure("p1", "97110", minutes=20))
    resources = [  # SNOMED CT 128139000 (inflammatory disorder): no mapping table names it
        builders.condition("c1", (SNOMED, "128139000")) if r["resourceType"] == "Condition" else r
        for r in resources
    ]
    decision = decide_gathered(settings, resources, "e1")
    (line,) = decision.lines
    assert line.status.value == "planned"
    assert [h.code for h in line.holds] == ["diagnosis-not-icd10"]
    assert "diagnosis-not-icd10" in {f.code for f in decision.findings}


def test_a_snomed_diagnosis_is_billed_under_the_icd10_code_a_mapping_table_gives_it(
    settings: Settings,
) -> None:
    resources = builders.complete_record(builders.procedure("p1", "97110", minutes=20))
    resources = [
        builders.condition("c1", (SNOMED, "239873007")) if r["resourceType"] == "Condition" else r
        for r in resources
    ]
    decision = decide_gathered(settings, resources, "e1")
    (line,) = decision.lines
    assert line.status.value == "billable"
    item = charge_item(line, decision, render_context(settings, WHEN))
    (reason,) = item["reason"]
    assert [(c["system"], c["code"]) for c in reason["coding"]] == [
        (ICD10CM, "M17.9"),
        (SNOMED, "239873007"),
    ]
    said = " ".join(e.text for e in decision.explanation)
    assert "billed as ICD-10-CM M17.9" in said
    assert "ConceptMap/snomed-icd10cm-diagnoses" in said


def test_a_diagnosis_table_refuses_a_target_that_is_not_an_icd10_code(settings: Settings) -> None:
    import json
    from pathlib import Path

    import pytest
    from marshmallow import ValidationError

    from plugin.schemas.conceptmap import load_concept_map

    path = Path(__file__).parents[1] / "config" / "mappings" / "snomed-icd10cm-diagnoses.json"
    table = json.loads(path.read_text())
    table["group"][0]["element"][0]["target"][0]["code"] = "97110"
    with pytest.raises(ValidationError) as caught:
        load_concept_map(table, settings.catalog)
    assert "97110 is not an ICD-10-CM code" in str(caught.value.messages)


def _pos(settings: Settings, resources: list[dict[str, Any]]) -> str:
    decision = decide_gathered(settings, resources, "e1")
    item = charge_item(decision.lines[0], decision, render_context(settings, WHEN))
    (ext,) = [e for e in item["extension"] if e["url"].endswith("/place-of-service")]
    assert ext["valueCoding"]["system"] == PLACE_OF_SERVICE
    return str(ext["valueCoding"]["code"])


def test_place_of_service_from_the_location_else_the_facility_else_11(settings: Settings) -> None:
    record = builders.complete_record(builders.procedure("p1", "97110", minutes=20))
    assert _pos(settings, record) == "11"
    tables = dataclasses.replace(
        settings.coding_tables, places_of_service={"Organization/clinic": "22"}
    )
    assert _pos(dataclasses.replace(settings, coding_tables=tables), record) == "22"
    location = {
        "resourceType": "Location",
        "id": "loc1",
        "type": [{"coding": [{"system": PLACE_OF_SERVICE, "code": "19"}]}],
    }
    record[0]["location"] = [{"location": {"reference": "Location/loc1"}}]
    assert _pos(dataclasses.replace(settings, coding_tables=tables), [*record, location]) == "19"
