"""Synthetic therapy visits as FHIR R4: deterministic for a seed, with a controlled share of
documentation problems. Used by the tests, the demo and the benchmarks.

The codes come from `vocabulary.py`; where a planted problem lands and how it breaks the record,
from `problems.py`. Patients and staff are invented (numbered names); nothing here describes a
real person.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from plugin.jsontypes import Json
from plugin.rules.systems import CPT, HCPCS, ICD10CM, IDENTIFIER_TYPE, NPI, NUCC, SNOMED
from plugin.sample.notes import NOTES, clean_note
from plugin.sample.problems import break_procedure, eligible_items
from plugin.sample.vocabulary import (
    BODY_SITES,
    CERTIFIED_URL,
    CLINIC_ZONE,
    DIAGNOSES,
    DISCIPLINE_TYPES,
    EVALUATIONS,
    LOCAL,
    MEASURES,
    PAYER_ID,
    PAYERS,
    PLANS,
    PROBLEM_TAG,
    PROBLEMS,
    ROLES,
    TOTAL_TIMED_URL,
)


@dataclass
class SampleSpec:
    visits: int = 20
    seed: int = 1
    start: date = date(2026, 11, 2)
    problem_rate: float = 0.25
    days: int = 1  # visits spread over this many consecutive days
    # Share of patients seen a second time that day by the same discipline (an afternoon
    # session, `enc-N-pm`): their minutes count on one billing day (Pub 100-04 ch.5 §20.2 C).
    second_visits: float = 0.0


@dataclass
class _Clinic:
    rng: random.Random
    resources: list[Json] = field(default_factory=list)
    hired: dict[str, int] = field(default_factory=dict)  # discipline → therapists employed
    # (day, discipline) → [when free, therapist number] of each therapist: one patient at a
    # time, so a clean sample never bills one-on-one time for two patients at once
    free: dict[tuple[date, str], list[list[Any]]] = field(default_factory=dict)


DAY_STARTS, LAST_START = time(8, 0), time(17, 0)  # the clinic's day; later bookings hire


def generate(spec: SampleSpec) -> Iterator[Json]:
    """The resources of a synthetic clinic: organisations, staff, then `spec.visits` visits.

    Streamed visit by visit, so a large sample is never held whole.
    """
    if spec.visits < 0 or not 0 <= spec.problem_rate <= 1 or not 0 <= spec.second_visits <= 1:
        raise ValueError("visits must be ≥ 0, problem_rate and second_visits within 0..1")
    clinic = _Clinic(random.Random(spec.seed))
    _organisations(clinic)
    _staff(clinic)
    yield from clinic.resources
    width = max(4, len(str(spec.visits)))
    number = 0
    while number < spec.visits:
        number += 1
        clinic.resources = []
        problem = None
        if clinic.rng.random() < spec.problem_rate:
            problem = clinic.rng.choice(PROBLEMS)
        day = spec.start + timedelta(days=(number - 1) % max(1, spec.days))
        # Drawn only when asked for, so samples without second visits stay as they were.
        second = bool(spec.second_visits) and clinic.rng.random() < spec.second_visits
        name = f"{number:0{width}d}"
        discipline, slot, booked, landed = _visit(clinic, name, day, problem, second)
        if landed == "concurrent":  # another patient, the same therapist, the same minutes
            alongside: list[Json] = []
            if number < spec.visits:
                number += 1  # the other patient's visit is one of the sample's visits
                other = f"{number:0{width}d}"
                _, _, alongside, _ = _visit(clinic, other, day, landed, False, (discipline, slot))
            if not _one_on_one_overlap(booked, alongside):
                _untag(clinic.resources)  # no other visit, or no one-on-one minute shared
        yield from clinic.resources


# The sample's codes billed one-on-one (timed, not a supervised modality), as it writes them
_ONE_ON_ONE = {
    code
    for plan in PLANS.values()
    for cpt, snomed, local, minutes in plan
    if minutes is not None
    for code in (cpt, snomed, local)
    if code
}


def _one_on_one_overlap(first: list[Json], second: list[Json]) -> bool:
    """Two visits' procedures by one performer share at least one whole minute of one-on-one
    timed service."""

    def blocks(procedures: list[Json]) -> list[tuple[str, datetime, datetime]]:
        return [
            (
                performer["actor"]["reference"],
                datetime.fromisoformat(p["performedPeriod"]["start"]),
                datetime.fromisoformat(p["performedPeriod"]["end"]),
            )
            for p in procedures
            if p.get("resourceType") == "Procedure"
            and p["code"]["coding"][0]["code"] in _ONE_ON_ONE
            and "end" in p.get("performedPeriod", {})
            for performer in p.get("performer", ())
        ]

    minute = timedelta(minutes=1)
    return any(
        a_who == b_who and min(a_end, b_end) - max(a_start, b_start) >= minute
        for a_who, a_start, a_end in blocks(first)
        for b_who, b_start, b_end in blocks(second)
    )


def _untag(resources: list[Json]) -> None:
    for resource in resources:
        if resource.get("resourceType") == "Encounter":
            resource.pop("meta", None)


def _organisations(clinic: _Clinic) -> None:
    clinic.resources.append(
        {"resourceType": "Organization", "id": "clinic", "name": "Example Therapy Clinic"}
    )
    for value, name in PAYERS:
        clinic.resources.append(
            {
                "resourceType": "Organization",
                "id": f"payer-{value.lower()}",
                "name": name,
                "identifier": [{"system": PAYER_ID, "value": value}],
            }
        )


def _staff(clinic: _Clinic) -> None:
    for discipline in ROLES:
        for _ in (1, 2):
            _hire(clinic, discipline)


# Credentials as written on the sample's staff (APTA, AOTA, ASHA designations), by NUCC role
CREDENTIALS = {
    "225100000X": "DPT",
    "225200000X": "PTA",
    "225X00000X": "OTR/L",
    "224Z00000X": "COTA",
    "235Z00000X": "CCC-SLP",
}
MRN_SYSTEM = "https://ehr.example.org/fhir/mrn"
VISIT_SYSTEM = "https://ehr.example.org/fhir/visit-number"  # what HL7 v2 PV1-19 carries


def sample_npi(code: str, number: int) -> str:
    """An invented NPI with a valid check digit (the Luhn formula over 80840 and the first nine
    digits, CMS NPI standard), unique per role and staff number."""
    base = f"1{sum(map(ord, code)) % 100:02d}{number:06d}"
    digits = [int(d) for d in "80840" + base]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if position % 2 == 0 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return base + str((10 - total % 10) % 10)


def _staff_id(discipline: str, code: str, number: int) -> str:
    return f"{discipline.lower()}-{code.lower()}-{number}"


def _hire(clinic: _Clinic, discipline: str) -> int:
    """A therapist of the discipline and, where it has them, the assistant who works with
    them: their Practitioner and PractitionerRole resources join the current output."""
    number = clinic.hired.get(discipline, 0) + 1
    clinic.hired[discipline] = number
    for code in ROLES[discipline]:
        if code is None:
            continue
        pid = _staff_id(discipline, code, number)
        clinic.resources.append(
            {
                "resourceType": "Practitioner",
                "id": pid,
                "identifier": [{"system": NPI, "value": sample_npi(code, number)}],
                "name": [{"family": f"Staff{number}", "given": [f"{discipline}{code[:4]}"]}],
                "qualification": [{"code": {"text": CREDENTIALS[code]}}],
            }
        )
        clinic.resources.append(
            {
                "resourceType": "PractitionerRole",
                "id": f"role-{pid}",
                "practitioner": {"reference": f"Practitioner/{pid}"},
                "organization": {"reference": "Organization/clinic"},
                "code": [{"coding": [{"system": NUCC, "code": code}]}],
            }
        )
    return number


def _book(clinic: _Clinic, discipline: str, day: date, not_before: datetime) -> list[Any]:
    """The therapist free first from `not_before` on: [start, number]; one is hired when every
    therapist's day is full. The caller moves the slot's time on past the visit."""
    opens = datetime.combine(day, DAY_STARTS, tzinfo=CLINIC_ZONE)
    slots = clinic.free.setdefault(
        (day, discipline), [[opens, n] for n in range(1, clinic.hired[discipline] + 1)]
    )
    slot = min(slots, key=lambda s: (max(s[0], not_before), s[1]))
    start = max(slot[0], not_before)
    if start.time() > LAST_START or start.date() != day:
        slot = [opens, _hire(clinic, discipline)]
        slots.append(slot)
        start = max(opens, not_before)
    slot[0] = start
    return slot


def _visit(
    clinic: _Clinic,
    number: str,
    day: date,
    problem: str | None,
    second: bool = False,
    alongside: tuple[str, list[Any]] | None = None,
) -> tuple[str, list[Any], list[Json], str | None]:
    """One patient's visit; `alongside` (discipline, booked slot) puts it in the same minutes
    as another patient's with the same therapist (the planted `concurrent` problem). Returns
    the discipline, the slot, the procedures and the problem that landed (None: none)."""
    rng = clinic.rng
    discipline = rng.choices(["PT", "OT", "SLP"], weights=[6, 3, 2])[0]
    if alongside is not None:
        discipline = alongside[0]
    patient, encounter = f"pat-{number}", f"enc-{number}"
    clinic.resources.append(
        {
            "resourceType": "Patient",
            "id": patient,
            "identifier": [
                {
                    "type": {"coding": [{"system": IDENTIFIER_TYPE, "code": "MR"}]},
                    "system": MRN_SYSTEM,
                    "value": f"MRN{number.replace('-', '')}",
                }
            ],
            "name": [{"family": f"Sample{number}", "given": ["Pat"]}],
            "birthDate": f"{rng.randint(1940, 2000)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
        }
    )
    payer = "OTHER-PLAN" if problem == "unknown-payer" else rng.choice([p for p, _ in PAYERS[:3]])
    if problem != "no-coverage":
        clinic.resources.append(_coverage(number, patient, payer, day))
    dx_code, dx_text = rng.choice(DIAGNOSES[discipline])
    condition = f"cond-{number}"
    clinic.resources.append(
        {
            "resourceType": "Condition",
            "id": condition,
            "subject": {"reference": f"Patient/{patient}"},
            "encounter": {"reference": f"Encounter/{encounter}"},
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active",
                    }
                ]
            },
            "code": {"coding": [{"system": ICD10CM, "code": dx_code, "display": dx_text}]},
        }
    )
    if problem != "no-goal":
        clinic.resources.append(_goal(number, patient, condition, dx_text))
    if problem not in ("no-goal", "goal-unlinked"):  # a goal linked to nothing: no plan
        clinic.resources.append(_care_plan(number, patient, day, discipline, condition))
    opens = datetime.combine(day, DAY_STARTS, tzinfo=CLINIC_ZONE)
    if alongside is not None:
        slot = alongside[1]
        start = slot[2]
    else:
        slot = _book(clinic, discipline, day, opens + timedelta(minutes=rng.choice([0, 15, 30])))
        start = slot[0]
    staff = _care_team(clinic, discipline, slot[1], problem)
    procedures, end, problem, timed_total = _procedures(  # problem: None if it found no place
        clinic, number, discipline, patient, encounter, condition, start, problem, payer, staff
    )
    slot[0] = max(slot[0], end + timedelta(minutes=5))
    slot[2:] = [start]  # where a visit alongside this one starts
    enc = _encounter(encounter, discipline, patient, start, end)
    if problem == "outside-encounter":
        enc["period"]["start"] = (start + timedelta(minutes=3)).isoformat()
    if problem not in ("no-diagnosis", "no-reason"):
        enc["diagnosis"] = [{"condition": {"reference": f"Condition/{condition}"}, "rank": 1}]
    if problem == "total-mismatch":
        enc["extension"] = [
            {"url": TOTAL_TIMED_URL, "valueQuantity": {"value": timed_total + 10, "code": "min"}}
        ]
    if problem:
        enc["meta"] = {"tag": [{"system": PROBLEM_TAG, "code": problem}]}
    clinic.resources.append(enc)
    clinic.resources.extend(procedures)
    booked = procedures
    if second and problem is None:  # a clean morning, then an afternoon session
        pm_slot = _book(clinic, discipline, day, end + timedelta(hours=4))
        later = pm_slot[0]
        pm = f"{encounter}-pm"
        procedures, pm_end, _, _ = _procedures(
            clinic,
            f"{number}-pm",
            discipline,
            patient,
            pm,
            condition,
            later,
            None,
            payer,
            _care_team(clinic, discipline, pm_slot[1], None),
            number,
        )
        pm_slot[0] = pm_end + timedelta(minutes=5)
        visit = _encounter(pm, discipline, patient, later, pm_end)
        visit["diagnosis"] = [{"condition": {"reference": f"Condition/{condition}"}, "rank": 1}]
        clinic.resources.append(visit)
        clinic.resources.extend(procedures)
    return discipline, slot, booked, problem


def _care_team(
    clinic: _Clinic, discipline: str, number: int, problem: str | None
) -> tuple[str, str | None]:
    """The booked therapist, and their assistant when one takes part (30 % of visits; every
    timed service in `assistant-alone`)."""
    lead, assistant = ROLES[discipline]
    helper = None
    if assistant and (clinic.rng.random() < 0.3 or problem == "assistant-alone"):
        helper = _staff_id(discipline, assistant, number)
    return _staff_id(discipline, lead, number), helper


def _care_plan(number: str, patient: str, day: date, discipline: str, condition: str) -> Json:
    """The plan of care the visit's procedures are based on, with its goal: begun at the
    evaluation two weeks before, certified two days after it (Pub 100-02 ch.15 §220.1.3)."""
    first = day - timedelta(days=14)
    return {
        "resourceType": "CarePlan",
        "id": f"plan-{number}",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": f"Patient/{patient}"},
        "category": [{"coding": [{"system": DISCIPLINE_TYPES, "code": discipline}]}],
        "period": {"start": first.isoformat()},
        "extension": [{"url": CERTIFIED_URL, "valueDate": (first + timedelta(days=2)).isoformat()}],
        "goal": [{"reference": f"Goal/goal-{number}"}],
        "addresses": [{"reference": f"Condition/{condition}"}],
    }


def _goal(number: str, patient: str, condition: str, dx_text: str) -> Json:
    return {
        "resourceType": "Goal",
        "id": f"goal-{number}",
        "lifecycleStatus": "active",
        "subject": {"reference": f"Patient/{patient}"},
        "description": {"text": f"Improve function limited by {dx_text.lower()}"},
        "addresses": [{"reference": f"Condition/{condition}"}],
    }


def _encounter(
    encounter: str, discipline: str, patient: str, start: datetime, end: datetime
) -> Json:
    return {
        "resourceType": "Encounter",
        "id": encounter,
        "identifier": [
            {
                "type": {"coding": [{"system": IDENTIFIER_TYPE, "code": "VN"}]},
                "system": VISIT_SYSTEM,
                "value": f"V{encounter.removeprefix('enc-')}",
            }
        ],
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "serviceType": {"coding": [{"system": DISCIPLINE_TYPES, "code": discipline}]},
        "subject": {"reference": f"Patient/{patient}"},
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "serviceProvider": {"reference": "Organization/clinic"},
    }


def _coverage(number: str, patient: str, payer: str, day: date) -> Json:
    return {
        "resourceType": "Coverage",
        "id": f"cov-{number}",
        "status": "active",
        "beneficiary": {"reference": f"Patient/{patient}"},
        "payor": [{"reference": f"Organization/payer-{payer.lower()}"}],
        "period": {"start": f"{day.year}-01-01"},
        "order": 1,
    }


def _procedures(
    clinic: _Clinic,
    number: str,
    discipline: str,
    patient: str,
    encounter: str,
    condition: str,
    start: datetime,
    problem: str | None,
    payer: str,
    staff: tuple[str, str | None],
    plan_number: str | None = None,
) -> tuple[list[Json], datetime, str | None, int]:
    rng = clinic.rng
    plan = rng.sample(PLANS[discipline], k=min(len(PLANS[discipline]), rng.randint(2, 4)))
    items: list[tuple[str, str | None, str | None, tuple[int, int] | None]] = list(plan)
    if rng.random() < 0.25:
        evaluation, evaluation_local = EVALUATIONS[discipline]
        items.insert(0, (evaluation, None, evaluation_local, None))
    if discipline == "PT" and rng.random() < 0.3:
        items.append(
            (
                "G0283" if payer == "MEDICARE-B" else "97014",
                None,
                "PT-ESTIM-UNATT" if payer == "MEDICARE-B" else None,
                None,
            )
        )
    clinician, helper = staff
    # The procedure a procedure-level problem lands on: a timed one for problems of time and of
    # objective measures, so that every problem the sample announces is one a checker must see.
    eligible = eligible_items(problem, items, discipline)
    if not eligible:
        problem = None  # nothing this problem can land on: the visit stays clean, and untagged
        eligible = list(range(len(items)))
    broken = rng.choice(eligible)
    timed_total = 0
    resources: list[Json] = []
    cursor = start
    for index, (cpt, snomed, local, minutes_range) in enumerate(items):
        minutes = rng.randint(*minutes_range) if minutes_range else rng.randint(20, 45)
        if minutes_range and problem == "under-8":
            minutes = 1
        if problem == "too-long" and index == broken:
            minutes = 200
        if problem == "overlap" and index == broken:
            cursor -= timedelta(minutes=8)  # starts before the previous service ended
        timed_total += minutes if minutes_range else 0
        pid = f"proc-{number}-{index + 1}"
        coding = _coding(rng, cpt, snomed, local, problem == "unmapped-code" and index == broken)
        # The therapist furnishes the first service; an assistant may take later timed ones.
        assisted = index > 0 and minutes_range is not None and rng.random() < 0.5
        if problem == "assistant-alone":
            assisted = True
        performer_id = helper if helper and assisted else clinician
        proc: Json = {
            "resourceType": "Procedure",
            "id": pid,
            "status": "completed",
            "code": {"coding": [coding]},
            "subject": {"reference": f"Patient/{patient}"},
            "encounter": {"reference": f"Encounter/{encounter}"},
            "performedPeriod": {
                "start": cursor.isoformat(),
                "end": (cursor + timedelta(minutes=minutes)).isoformat(),
            },
            "performer": [
                _performer(performer_id, problem == "no-performer-role" and index == broken)
            ],
            "reasonReference": [{"reference": f"Condition/{condition}"}],
            "note": [{"text": _note(cpt, minutes, int(number.split("-")[0]) + index)}],
        }
        if discipline != "SLP" and not (problem == "no-body-site" and index == broken):
            site, text = rng.choice(BODY_SITES)
            proc["bodySite"] = [{"coding": [{"system": SNOMED, "code": site, "display": text}]}]
        if problem == "no-reason":
            del proc["reasonReference"]
        if problem not in ("no-goal", "goal-unlinked"):
            proc["basedOn"] = [{"reference": f"CarePlan/plan-{plan_number or number}"}]
        if index == broken:
            break_procedure(proc, problem, cursor, minutes, cpt)
        resources.append(proc)
        if minutes_range and problem != "no-observation":
            resources.append(
                _observation(rng, number, index, pid, patient, encounter, cursor, minutes)
            )
        cursor += timedelta(minutes=minutes + rng.choice([0, 0, 2, 5]))
    return resources, cursor, problem, timed_total


def _coding(
    rng: random.Random, cpt: str, snomed: str | None, local: str | None, unmapped: bool
) -> Json:
    if unmapped:
        return {"system": LOCAL, "code": "PT-UNKNOWN-99", "display": "Unmapped local charge"}
    choice = rng.random()
    if snomed and choice < 0.3:
        return {"system": SNOMED, "code": snomed}
    if local and choice < 0.5:
        return {"system": LOCAL, "code": local}
    return {"system": HCPCS if cpt.startswith("G") else CPT, "code": cpt}


def _performer(practitioner: str, hide_role: bool) -> Json:
    performer: Json = {"actor": {"reference": f"Practitioner/{practitioner}"}}
    if hide_role:
        performer["actor"] = {"reference": "Practitioner/unknown-staff"}
    elif practitioner.count("-") >= 2:
        code = practitioner.split("-")[1].upper()
        performer["function"] = {"coding": [{"system": NUCC, "code": code}]}
    return performer


def _note(cpt: str, minutes: int, pick: int) -> str:
    label = "Evaluation with standardised measures and plan of care" if cpt not in NOTES else ""
    return f"{clean_note(cpt, label, pick)} {minutes} minutes one-on-one."


def _observation(
    rng: random.Random,
    number: str,
    index: int,
    procedure: str,
    patient: str,
    encounter: str,
    when: datetime,
    minutes: int,
) -> Json:
    measure = rng.choice(MEASURES)
    return {
        "resourceType": "Observation",
        "id": f"obs-{number}-{index + 1}",
        "status": "final",
        "partOf": [{"reference": f"Procedure/{procedure}"}],
        "subject": {"reference": f"Patient/{patient}"},
        "encounter": {"reference": f"Encounter/{encounter}"},
        "effectiveDateTime": (when + timedelta(minutes=minutes)).isoformat(),
        "code": {"text": measure},
        "valueQuantity": {"value": rng.randint(10, 120), "unit": "score"},
    }


def _urn(name: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, name)}"


def as_transaction(resources: Iterable[Json]) -> Json:
    """A transaction Bundle that PUTs each resource by id (loads into a server as is)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": _urn(f"{r['resourceType']}/{r['id']}"),
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }
