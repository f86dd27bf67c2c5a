"""Where a planted documentation problem lands in a visit, and how it breaks the record."""

from __future__ import annotations

from datetime import datetime, timedelta

from plugin.jsontypes import Json
from plugin.sample.notes import MISCODED, UNSKILLED, without_measures
from plugin.sample.vocabulary import AIDE_ROLE, NEEDS_BODY_SITE, TIMED_PROBLEMS


def eligible_items(
    problem: str | None,
    items: list[tuple[str, str | None, str | None, tuple[int, int] | None]],
    discipline: str,
) -> list[int]:
    """The procedures a problem can land on so that a checker must see it."""
    timed = [i for i, item in enumerate(items) if item[3] is not None]
    if problem == "overlap":
        return [i for i in timed if i > 0]
    if problem == "outside-encounter":
        return [0] if items[0][3] is not None else []
    if problem in TIMED_PROBLEMS:
        return timed
    if problem == "no-body-site":
        needs = [i for i, item in enumerate(items) if item[0] in NEEDS_BODY_SITE]
        return needs if discipline != "SLP" else []
    if problem == "assistant-alone":
        return timed if discipline != "SLP" else []
    if problem == "no-skill":
        return [i for i, item in enumerate(items) if item[0] in UNSKILLED]
    if problem == "wrong-code":
        return [i for i, item in enumerate(items) if item[0] in MISCODED]
    return list(range(len(items)))


def break_procedure(
    proc: Json, problem: str | None, start: datetime, minutes: int, code: str
) -> None:
    period = proc["performedPeriod"]
    note = proc["note"][0]
    if problem == "no-observation":
        note["text"] = without_measures(note["text"])
    elif problem == "vague-note":
        note["text"] = "See flowsheet."
    elif problem == "no-skill":
        note["text"] = f"{UNSKILLED[code]} {minutes} minutes one-on-one."
    elif problem == "wrong-code":
        note["text"] = f"{MISCODED[code][1]} {minutes} minutes one-on-one."
    if problem == "no-time":
        del proc["performedPeriod"]
    elif problem == "datetime-only":
        del proc["performedPeriod"]
        proc["performedDateTime"] = start.isoformat()
    elif problem == "end-before-start":
        period["end"] = (start - timedelta(minutes=minutes)).isoformat()
    elif problem == "no-end":
        del period["end"]
    elif problem == "not-done":
        proc["status"] = "not-done"
    elif problem == "no-note":
        del proc["note"]
    elif problem == "no-performer":
        del proc["performer"]
    elif problem == "aide":
        system, code = AIDE_ROLE
        proc["performer"] = [
            {
                "actor": {"reference": "Practitioner/aide-1"},
                "function": {"coding": [{"system": system, "code": code}]},
            }
        ]
    elif problem == "group-session":
        proc["subject"] = {"reference": "Group/balance-class"}
