"""Benchmark: the overlap checks as a day grows, 100 to 10,000 procedures (issue 30, item 5).

Two shapes, each decided through the production path:
- `one patient`: one visit whose procedures all overlap one another (the time-overlap check,
  tests/test_overlaps.py), with the procedure limit raised so the check itself is measured;
- `from the EHR`: one visit of one therapist's overlapping one-on-one procedures, decided as a
  hook with an EHR decides it: the colleagues' search (here a stub reader) brings those
  procedures back and as many of other patients (the concurrent-patients check,
  plugin/rules/concurrency.py);
- `one performer`: one therapist's overlapping procedures, one per patient, decided as a file
  is: each patient's day compared with every other's (n visits × n colleagues each: the file's
  own shape, quadratic by construction; a therapist sees tens of patients a day, not
  thousands).

Run: `.venv/bin/python bench/bench_overlaps.py [--sizes 100,1000,...]`. Prints seconds and the
ratio to the previous size (2 for linear, 4 for quadratic on doubling); asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from datetime import datetime, timedelta
from typing import Any

from fhir_mappings.assemble import VisitAssembler
from plugin.config.files import Settings, load_settings
from plugin.gateway.gather import Gathered
from plugin.pipeline.billing_day import decide_gathered
from plugin.pipeline.stages import decide, translate_tables
from plugin.rules.day import days_of
from tests import builders

START = datetime.fromisoformat("2026-11-02T08:00:00-05:00")


def one_patient(settings: Settings, n: int) -> float:
    procedures = [
        builders.procedure(f"p{i}", "97110", (START + timedelta(seconds=i)).isoformat(), 30)
        for i in range(n)
    ]
    record = builders.complete_record(*procedures, visit=builders.encounter(hours=12))
    started = time.perf_counter()
    decide_gathered(settings, record, "e1")
    return time.perf_counter() - started


class _Colleagues:
    """The EHR reader's colleagues' search, answered from memory (no history asked for)."""

    def __init__(self, resources: list[Any]) -> None:
        self.resources = resources
        self.error = None

    def history(self, patient: str, date: str) -> None:
        return None

    def colleagues(self, performers: list[str], date: str) -> Gathered:
        return Gathered(self.resources)


def from_the_ehr(settings: Settings, n: int) -> float:
    mine = []
    theirs = []
    for i in range(n):
        when = (START + timedelta(seconds=i)).isoformat()
        for into, patient in ((mine, "p1"), (theirs, "p2")):
            procedure = builders.procedure(f"{patient}-{i}", "97110", when, 30)
            procedure["performer"] = [builders.performer("Practitioner/pt1", "225100000X")]
            procedure["subject"] = {"reference": f"Patient/{patient}"}
            into.append(procedure)
    record = builders.complete_record(*mine, visit=builders.encounter(hours=12))
    reader = _Colleagues(mine + theirs)
    started = time.perf_counter()
    decide_gathered(settings, record, "e1", reader)  # type: ignore[arg-type]
    return time.perf_counter() - started


def one_performer(settings: Settings, n: int) -> float:
    resources: list[Any] = []
    for i in range(n):
        patient = f"q{i}"
        procedure = builders.procedure(
            f"{patient}-p1",
            "97110",
            (START + timedelta(seconds=i)).isoformat(),
            30,
            encounter_id=f"{patient}-e1",
        )
        procedure["performer"] = [builders.performer("Practitioner/pt1", "225100000X")]
        record = builders.complete_record(procedure, visit=builders.encounter(f"{patient}-e1"))
        text = json.dumps(record).replace('"Patient/', f'"Patient/{patient}-')
        own = '"resourceType": "Patient", "id": "'
        text = text.replace(own, f"{own}{patient}-")
        resources += json.loads(text)
    started = time.perf_counter()
    assembler = VisitAssembler(translate_tables(settings))
    for resource in resources:
        assembler.add(resource)
    for day in days_of(assembler.visits()):
        decide(settings, day)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,1000,2000,4000,8000,10000")
    parser.add_argument("--file", action="store_true", help="also the file shape (quadratic)")
    args = parser.parse_args()
    base = load_settings({})
    settings = dataclasses.replace(
        base, service=dataclasses.replace(base.service, max_procedures=100_000)
    )
    shapes = (("one patient", one_patient), ("from the EHR", from_the_ehr))
    if args.file:
        shapes += (("one performer", one_performer),)
    for name, shape in shapes:
        previous: tuple[int, float] | None = None
        for n in (int(s) for s in args.sizes.split(",")):
            seconds = shape(settings, n)
            ratio = ""
            if previous is not None:
                ratio = f"  ×{seconds / previous[1]:.1f} for ×{n / previous[0]:.1f} procedures"
            print(f"{name:14} {n:6d} procedures  {seconds:7.3f} s{ratio}")
            previous = (n, seconds)


if __name__ == "__main__":
    main()
