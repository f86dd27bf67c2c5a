"""What to write to the EHR: the difference between a decision and the ChargeItems already there.

One transaction (docs/architecture.md "Idempotency"): new lines are created only if no ChargeItem
has their identifier (`ifNoneExist`); changed lines are updated against the version we read
(`ifMatch`, so a concurrent writer makes it fail with 412 instead of being overwritten); lines that
vanished are set `entered-in-error`; unchanged lines are left alone (no new versions); a ChargeItem
already `billed` is never modified — a correction is reported instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fhir_mappings.chargeitem import (
    RenderContext,
    charge_item,
    full_url,
    provenance_entry,
)
from plugin.jsontypes import Json
from plugin.rules.decision import Decision
from plugin.rules.lines import ChargeLine

# Elements that change on every run or are the server's: not part of a line's content.
_VOLATILE = ("id", "meta", "text", "enteredDate")


@dataclass(frozen=True)
class Existing:
    """One of our ChargeItems as the EHR holds it."""

    id: str
    version: str | None
    status: str
    resource: Json


@dataclass
class LineFates:
    """What each line of a day came to at its receiver, by line key: one shape for every
    charge outlet's plan (plugin/outlets), the API, the CLI and the ledger."""

    created: list[str] = field(default_factory=list)  # line keys
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    voided: list[str] = field(default_factory=list)  # set entered-in-error, or credited
    corrections: list[str] = field(default_factory=list)  # billed charges that now differ

    def summary(self) -> dict[str, list[str]]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "entered_in_error": self.voided,
            "corrections_needed": self.corrections,
        }


@dataclass
class WritePlan(LineFates):
    """The writes of one encounter, and what each line came to."""

    entries: list[Json] = field(default_factory=list)

    @property
    def bundle(self) -> Json | None:
        if not self.entries:
            return None
        return {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}

    @property
    def payload(self) -> Json | None:
        """What the FHIR outlet sends (plugin/outlets): the transaction."""
        return self.bundle


def our_charge_items(resources: list[Json], system: str) -> dict[str, Existing]:
    """Existing ChargeItems that carry our line identifier, by line key."""
    found: dict[str, Existing] = {}
    for resource in resources:
        if resource.get("resourceType") != "ChargeItem":
            continue
        identifiers = resource.get("identifier")
        for ident in identifiers if isinstance(identifiers, list) else ():
            if (
                isinstance(ident, dict)
                and ident.get("system") == system
                and isinstance(ident.get("value"), str)
                and ident["value"]
            ):
                rid = resource.get("id")
                if not isinstance(rid, str) or not rid:
                    continue  # no id to update it by: the identifier's conditional create finds it
                meta = resource.get("meta")
                version = meta.get("versionId") if isinstance(meta, dict) else None
                found[str(ident["value"])] = Existing(
                    id=rid,
                    # a versionId that is not a string (a list, a number) is no version to
                    # match: the update goes without If-Match
                    version=version if isinstance(version, str) and version else None,
                    status=str(resource.get("status", "")),
                    resource=resource,
                )
    return found


def of_the_day(existing: dict[str, Existing], decision: Decision) -> dict[str, Existing]:
    """Our ChargeItems that belong to the decided day: keyed on its owner and one of its
    dates, or written per encounter (an earlier release) for one of its visits. The day's
    search also brings ChargeItems of the days around it, which this run must not touch."""
    dates = {v.date_of_service for v in decision.visits} | {ln.date for ln in decision.lines}
    prefixes = tuple(f"{decision.owner}/{d or 'undated'}/" for d in dates)
    encounters = {v.encounter_id for v in decision.visits}

    def of_this_day(key: str) -> bool:
        legacy = _per_encounter(key)
        return key.startswith(prefixes) or (legacy is not None and legacy[0] in encounters)

    return {key: item for key, item in existing.items() if of_this_day(key)}


def _per_encounter(key: str) -> tuple[str, str, str, str] | None:
    """(encounter id, date, discipline, code) of a key an earlier release wrote per encounter;
    None for a billing-day key."""
    parts = key.split("/")
    if len(parts) != 4:
        return None
    encounter, day, discipline, code = parts
    return encounter, day, discipline, code


def content(resource: Json) -> Json:
    """A ChargeItem without what changes on every run: what a billing clerk would compare."""
    return {k: v for k, v in resource.items() if k not in _VOLATILE}


def plan_writes(
    decision: Decision, existing: dict[str, Existing], ctx: RenderContext, server_base: str
) -> WritePlan:
    """The transaction entries that bring the EHR's ChargeItems in line with the decision.

    ChargeItems written per encounter before the billing day (identifier
    `{encounter}/{date}/{discipline}/{code}`) are taken over: each is set entered-in-error and
    its day line created in the same transaction; one already billed stays, the day line is not
    created beside it, and a difference is reported as a correction.
    """
    plan = WritePlan()
    defs = ctx.definitions
    written: list[str] = []
    legacy = _legacy_billed(existing)
    handled: set[str] = set()
    for line in decision.lines:
        item = charge_item(line, decision, ctx)
        old = existing.get(line.key)
        if old is None:
            billed = _legacy_matches(line, legacy)
            if billed:
                handled.update(key for key, _ in billed)
                units = sum((b.resource.get("quantity") or {}).get("value") or 0 for _, b in billed)
                if units != line.units:
                    names = ", ".join(f"ChargeItem/{b.id}" for _, b in billed)
                    plan.corrections.append(
                        f"{line.key}: {names} billed per encounter with {units} unit(s); "
                        f"the day now comes to {line.units}"
                    )
                continue
            query = f"identifier={defs.line_identifier}|{line.key}"
            url = full_url(defs, line)
            plan.entries.append(
                _entry(url, item, {"method": "POST", "url": "ChargeItem", "ifNoneExist": query})
            )
            plan.created.append(line.key)
            written.append(url)
        elif content(old.resource) == content(item):
            plan.unchanged.append(line.key)
        elif old.status == "billed":
            plan.corrections.append(f"{line.key}: ChargeItem/{old.id} is billed and now differs")
        else:
            plan.entries.append(_update(old, item, server_base))
            plan.updated.append(line.key)
            written.append(f"ChargeItem/{old.id}")
    keys = {line.key for line in decision.lines}
    for key, old in existing.items():
        if key in keys or key in handled or old.status == "entered-in-error":
            continue
        if old.status == "billed":
            plan.corrections.append(f"{key}: ChargeItem/{old.id} is billed but no longer decided")
            continue
        voided = {**old.resource, "status": "entered-in-error"}
        plan.entries.append(_update(old, content(voided), server_base))
        plan.voided.append(key)
        written.append(f"ChargeItem/{old.id}")
    if written:
        plan.entries.append(provenance_entry(decision, written, ctx))
    return plan


_Legacy = dict[tuple[str, str, str, str], tuple[str, Existing]]


def _legacy_billed(existing: dict[str, Existing]) -> _Legacy:
    """Billed ChargeItems under the per-encounter identifier `{encounter id}/{date}/
    {discipline}/{code}`, by (encounter, date, discipline, code)."""
    found: _Legacy = {}
    for key, old in existing.items():
        parts = _per_encounter(key)
        if parts is not None and old.status == "billed":
            encounter, day, discipline, code = parts
            found[(f"Encounter/{encounter}", day, discipline, code)] = (key, old)
    return found


def _legacy_matches(line: ChargeLine, legacy: _Legacy) -> list[tuple[str, Existing]]:
    """The billed per-encounter ChargeItems that counted this day line's code."""
    day = line.date or "undated"
    return [
        legacy[wanted]
        for encounter in line.encounters
        if (wanted := (encounter, day, line.discipline.value, line.code)) in legacy
    ]


def _entry(url: str, resource: Json, request: Json) -> Json:
    return {"fullUrl": url, "resource": resource, "request": request}


def _update(old: Existing, item: Json, server_base: str) -> Json:
    """A version-checked update: a concurrent change makes the transaction fail with 412."""
    request: Json = {"method": "PUT", "url": f"ChargeItem/{old.id}"}
    if old.version:
        request["ifMatch"] = f'W/"{old.version}"'
    return _entry(f"{server_base.rstrip('/')}/ChargeItem/{old.id}", {**item, "id": old.id}, request)
