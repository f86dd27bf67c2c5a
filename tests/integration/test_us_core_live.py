"""The sample written the US Core way, read from the sandbox EHR: every billing day decides as
the same sample written today's way (roles from PractitionerRole.specialty/code, plan-of-care
certification from the signed plan DocumentReference and its Provenance, read with the day's
search and the history batch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plugin.config.files import load_settings
from plugin.gateway.factory import connect
from plugin.gateway.gather import Gatherer
from plugin.pipeline.billing_day import DaySource, WriteMode, run_day
from tests.ehr import load_sample, running_ehr
from tests.integration.conftest import ENTERED

SAMPLE = {"visits": 24, "seed": 5, "problem_rate": 0.3, "second_visits": 0.2}


def _decisions(folder: Path, shape: str) -> dict[str, Any]:
    with running_ehr(folder) as server:
        bundle = load_sample(server, shape=shape, **SAMPLE)
        settings = load_settings({"THERACHARGE_FHIR_BASE_URL": server.base_url})
        source = DaySource(Gatherer(connect(settings.fhir)))
        encounters = [
            e["resource"]["id"]
            for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Encounter"
        ]
        found = {}
        for encounter in encounters:
            run = run_day(settings, encounter, source, WriteMode.PLAN, ENTERED, "test")
            found[encounter] = (
                sorted(
                    (ln.code, ln.units, ln.modifiers, ln.status.value, str(ln.price))
                    for ln in run.decision.lines
                ),
                sorted(f.code for f in run.decision.findings if f.severity.value != "info"),
                " ".join(e.text for e in run.decision.explanation),
            )
        return found


def test_the_us_core_sample_decides_every_day_as_todays_sample(tmp_path: Path) -> None:
    today = _decisions(tmp_path / "today", "theracharge")
    written = _decisions(tmp_path / "us-core", "us-core")
    assert today.keys() == written.keys()
    for encounter, (lines, gaps, _) in today.items():
        assert written[encounter][0] == lines, encounter
        assert written[encounter][1] == gaps, encounter
    said = " ".join(text for _, _, text in written.values())
    assert "specialty" in said  # the roles came from where US Core puts them
    assert "DocumentReference/plan-doc-" in said  # and the certification from the signed plan
    modifiers = {m for lines, _, _ in written.values() for line in lines for m in line[2]}
    assert {"CQ", "CO"} & modifiers
