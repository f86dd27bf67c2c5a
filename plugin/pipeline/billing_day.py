"""One orchestrator for every trigger against the EHR: read the billing day → decide → plan →
write (docs/architecture.md "How each trigger flows", "The billing day")."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from msgspec.structs import replace

from fhir_mappings.assemble import VisitAssembler
from plugin.config.files import Settings
from plugin.gateway.client import iter_resources
from plugin.gateway.errors import FhirError, VersionConflict
from plugin.gateway.gather import (
    Gathered,
    Gatherer,
    HistoryAsk,
    NotFound,
    Riders,
    encounter_patient_and_date,
    is_encounter,
)
from plugin.gateway.mllp import NoAck
from plugin.jsontypes import Json
from plugin.outlets import Outlet, OutletPlan
from plugin.outlets.fhir import FhirOutlet, TakenButStale
from plugin.pipeline.stages import decide, refuse_too_large, render_context, translate_tables
from plugin.render.report import day_report
from plugin.rules.concurrency import one_on_one
from plugin.rules.day import day_for
from plugin.rules.decision import Decision
from plugin.rules.lines import LineStatus
from plugin.rules.visit import Visit

log = logging.getLogger(__name__)
DayLock = Callable[[str], AbstractContextManager[None]]  # a billing day's name → held while used


# --- one orchestrator for every trigger: gather the day → decide → plan → write -----------------


class WriteMode(StrEnum):
    PREVIEW = "preview"  # decide only (cards, a dry look)
    PLAN = "plan"  # decide and plan the writes against the EHR's ChargeItems; send nothing
    WRITE = "write"  # send the plan in one transaction


@dataclass
class DayRun:
    """What one trigger came to: the day's decision, the writes planned, what was sent."""

    decision: Decision
    plan: OutletPlan | None  # None in preview
    written: bool  # the transaction was sent (False on a preview, a plan, or nothing to change)
    attempts: int  # 1 + the times a concurrent change made us read and decide again
    capped: bool  # a search stopped at the page cap
    alone: bool = False  # decided without the patient's other visits of the day (none readable)
    error: str | None = None  # the write failed (report_write_errors): the decision stands
    configuration: dict[str, str] = field(default_factory=dict)  # table → version decided under

    @property
    def outcome(self) -> str:
        """written, unchanged, preview, planned or failed: one word for the ledger and logs."""
        if self.error:
            return "failed"
        if self.plan is None:
            return "preview"
        if self.written:
            return "written"
        return "unchanged" if self.plan.payload is None else "planned"


@dataclass(frozen=True)
class DaySource:
    """Where a trigger's data comes from: the EHR (a gatherer), what the caller already has
    (a hook's prefetch), or both — the prefetch then names the day and the EHR completes it.
    `day` is the (patient, date of service) a trigger already knows (a notification's payload,
    the `--since` listing, the ledger), so the day is read in one search without first reading
    the encounter."""

    gatherer: Gatherer | None = None
    prefetched: list[Json] | None = None
    day: tuple[str, str] | None = None

    @staticmethod
    def named(gatherer: Gatherer, day: str | None) -> DaySource:
        """From a stored day name "Patient/123|2026-11-02" (None: read the encounter first)."""
        patient, _, date = (day or "").rpartition("|")
        usable = bool(patient) and not patient.startswith("Encounter/") and _ISO_DATE.match(date)
        return DaySource(gatherer, None, (patient, date) if usable else None)


MAX_CONFLICT_RETRIES = 3
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}$")


class DayUnreadable(FhirError):
    """The patient's other visits could not be read, so the day cannot be written."""


def run_day(
    settings: Settings,
    encounter_id: str,
    source: DaySource,
    mode: WriteMode,
    entered: datetime,
    trigger: str,
    *,
    report_write_errors: bool = False,
    lock: DayLock | None = None,
    outlet: Outlet | None = None,
) -> DayRun:
    """Decide the billing day of one encounter and bring the EHR's ChargeItems in line with it.

    `lock` (plugin.store.Store.day_locks.hold): a run that writes holds its billing day's lock
    from reading the day to writing it, so no other instance or worker writes that day at the
    same time (docs/deployment.md); the EHR's conditional writes below stay the last line of
    defence.

    Every trigger calls this (the hook, a notification, the CLI, a page, the charges API). A
    version conflict (412: another run changed a ChargeItem since we read it), or a create that
    found a ChargeItem another run wrote since we read (its content may be that run's older
    view of the day), sends us back to read the day from the EHR and decide again, a bounded
    number of times, so concurrent runs converge on exactly one ChargeItem per line holding
    the decision of everything the EHR has. Raises plugin.gateway.errors.FhirError when the
    EHR fails (with `report_write_errors`, a failed write is returned in `error` instead).

    `outlet` is where the charges go (plugin/outlets: settle, plan, send); by default the EHR's
    ChargeItems. Lines the outlet's receiver refused are held with its words
    (`billing-system-refused`).
    """
    key = None
    if lock is not None and mode is WriteMode.WRITE:
        source, key = _named_day(source, encounter_id)
    with lock(key) if lock is not None and key is not None else nullcontext():
        ctx = render_context(settings, entered, trigger)
        configuration = dict(ctx.configuration)
        prefetched = source.prefetched
        outlet = outlet or FhirOutlet(source.gatherer.client if source.gatherer else None)
        sent: OutletPlan | None = None  # a transaction of this run that the EHR took
        attempt = 0
        while True:
            attempt += 1
            reader = EhrReader(settings, source.gatherer)
            resources, capped, alone, unread = _read_day(source, prefetched, encounter_id, reader)
            if unread is not None:
                unread = f"the patient's other visits of the day: {unread}"
            decision = decide_gathered(settings, resources, encounter_id, None if alone else reader)
            if not alone and reader.error and unread is None:
                unread = f"the patient's history or the performers' other services: {reader.error}"
            if mode is WriteMode.PREVIEW:
                return DayRun(decision, None, False, attempt, capped, alone, None, configuration)
            base = source.gatherer.client.base_url if source.gatherer else ""
            writable = source.gatherer is not None and unread is None
            try:
                if mode is WriteMode.WRITE and writable:
                    outlet.settle(decision)  # what an earlier run left unfinished, first
                plan = outlet.plan(decision, resources, ctx, base)
            except (FhirError, NoAck) as exc:  # settling an earlier run's send failed again
                if not report_write_errors:
                    raise
                run = DayRun(decision, None, False, attempt, capped, alone, str(exc), configuration)
                return run
            run = DayRun(decision, plan, False, attempt, capped, alone, None, configuration)
            if mode is WriteMode.PLAN:
                return run
            try:
                if plan.payload is not None:
                    if source.gatherer is None:
                        raise DayUnreadable("no FHIR server to write to")
                    if unread is not None:
                        raise DayUnreadable(unread)
                delivery = outlet.send(plan, decision)
            except TakenButStale:
                sent = plan  # the EHR took it: it stands, whatever the next round plans
                if attempt > MAX_CONFLICT_RETRIES:
                    raise
                prefetched = None
                continue
            except VersionConflict:
                if attempt > MAX_CONFLICT_RETRIES:
                    raise
                prefetched = None  # what was prefetched is out of date: read the day again
                continue
            except (FhirError, NoAck) as exc:
                if not report_write_errors:
                    raise
                run.error = str(exc)
                return run
            run.written = plan.payload is not None
            if not run.written and sent is not None:  # what we sent before now stands
                run.plan, run.written = sent, True
            if delivery.refused:  # the receiver's words on the worklist: held, never dropped
                run.decision = hold_refused(settings, run.decision, delivery.refused)
                if delivery.answer:
                    run.written = False
                    run.error = f"the billing system refused the day's charges ({delivery.answer})"
            return run


def _named_day(source: DaySource, encounter_id: str) -> tuple[DaySource, str | None]:
    """The billing day's name ("Patient/1|2026-11-02") for its lock, and the source naming
    it: from the trigger, else the prefetch, else one read of the encounter (which the day's
    search then needs no more). None when the encounter names no patient or date."""
    named = source.day
    if named is None and source.prefetched is not None:
        patient, date = _patient_and_date(source.prefetched, encounter_id)
        named = (patient, date) if patient and date else None
    elif named is None and source.gatherer is not None:
        patient, date = encounter_patient_and_date(source.gatherer.read_encounter(encounter_id))
        if patient and date:
            named = (patient, date)
            source = DaySource(source.gatherer, None, named)
    return source, f"{named[0]}|{named[1]}" if named else None


def hold_refused(
    settings: Settings, decision: Decision, refused: dict[str, tuple[str, str]]
) -> Decision:
    """The decision with each line the outlet could not deliver held, the words that say why
    its finding (`billing-system-refused`, `charge-code-unmapped`): on the worklist and the
    decision page until someone fixes the charge and runs the day again."""
    lines, found = [], []
    for line in decision.lines:
        if line.key not in refused:
            lines.append(line)
            continue
        code, words = refused[line.key]
        said = {
            "billing-system-refused": f"The billing system did not take the {line.code} charge",
            "charge-code-unmapped": f"The {line.code} charge could not be written",
        }[code]
        finding = settings.findings.make(code, f"{said}: {words}", line.context)
        found.append(finding)
        lines.append(
            replace(
                line,
                status=LineStatus.PLANNED,
                holds=(*line.holds, finding),
                note=f"Held: {said[0].lower()}{said[1:]} ({words})",
            )
        )
    return dataclasses.replace(decision, lines=tuple(lines), findings=(*decision.findings, *found))


def _read_day(
    source: DaySource, prefetched: list[Json] | None, encounter_id: str, reader: EhrReader
) -> tuple[list[Json], bool, bool, str | None]:
    """(resources, capped, decided alone, why the day could not be read). With a prefetch,
    what the reader will want besides (the history, the performers' other services) is asked
    in the day's batch where the EHR takes one (EhrReader.riders)."""
    gatherer = source.gatherer
    if prefetched is None:
        if gatherer is None:
            raise DayUnreadable("no FHIR server to read the encounter from")
        if source.day is not None:
            gathered = gatherer.day(*source.day)
            if any(is_encounter(r, encounter_id) for r in gathered.resources):
                return gathered.resources, gathered.capped, False, None
            # the encounter moved to another day (or another patient) since it was named
        gathered = gatherer.encounter_day(encounter_id)
        return gathered.resources, gathered.capped, False, None
    patient, day = _patient_and_date(prefetched, encounter_id)
    if gatherer is None or patient is None or day is None:
        return prefetched, False, gatherer is None, None
    riders = reader.riders(prefetched, encounter_id)
    try:
        gathered = gatherer.day(patient, day, riders)
    except FhirError as exc:
        log.warning("reading the day of Encounter/%s failed; decided alone: %s", encounter_id, exc)
        return prefetched, False, True, str(exc)
    if riders is not None:
        reader.primed = (patient, day, riders, gathered)
    return _merged(gathered.resources, prefetched), gathered.capped, False, None


def _patient_and_date(resources: list[Json], encounter_id: str) -> tuple[str | None, str | None]:
    encounter = next((r for r in resources if is_encounter(r, encounter_id)), None)
    return encounter_patient_and_date(encounter)


def _merged(read: list[Json], prefetched: list[Json]) -> list[Json]:
    """The EHR's resources, and the prefetched ones it did not return (the EHR's copy wins)."""
    have = {_identity(r) for r in read}
    return read + [r for r in prefetched if _identity(r) not in have]


def _identity(resource: Json) -> tuple[str, str] | None:
    """(type, id) of a resource; None when either is not a string (nothing to match by)."""
    kind, rid = resource.get("resourceType"), resource.get("id")
    return (kind, rid) if isinstance(kind, str) and isinstance(rid, str) else None


class EhrReader:
    """Reads what a billing day needs beyond its own resources: the patient's episode (history)
    and the performers' services for other patients (one-on-one). On a failure the reader
    records `error` and returns None: the day is decided without it, and not written
    (run_day). What the day's own batch already brought (`primed`, by `riders`) is not asked
    again."""

    def __init__(self, settings: Settings, gatherer: Gatherer | None) -> None:
        self.settings = settings
        self.rules = settings.episode
        self.gatherer = gatherer
        self.error: str | None = None
        # (patient, date, what was asked, the day's read) when the day's batch carried riders
        self.primed: tuple[str, str, Riders, Gathered] | None = None

    @property
    def ask(self) -> HistoryAsk:
        return HistoryAsk(
            self.rules.lookback_days,
            frozenset(self.rules.report_codes | self.rules.plan_document_codes),
            orders="order" in self.rules.certification_routes,
        )

    def riders(self, prefetched: list[Json], encounter_id: str) -> Riders | None:
        """What decide_gathered will ask for besides the day, as the prefetched visit tells
        it: the history when the visit's payer applies the episode rules, the performers of its
        one-on-one services. None when the prefetch does not assemble into the visit (the day
        read then says what is wrong)."""
        if self.gatherer is None:
            return None
        try:
            visits = day_for(
                _day_read(self.settings, prefetched).visits(), f"Encounter/{encounter_id}"
            )
        except Exception:  # noqa: BLE001 — only a guess at what to ask: the day read decides
            # the prefetch again and reports whatever is wrong with it as it always has
            log.info("the prefetch did not tell what to ask with the day; asked afterwards")
            return None
        if not visits:
            return None
        performers = tuple(_one_on_one_performers(visits, self.settings))
        history = self.ask if _wants_history(self.settings, visits[0]) else None
        return Riders(history, performers) if history or performers else None

    def history(
        self, patient: str, date: str, performers: list[str] | None = None
    ) -> Gathered | None:
        """The patient's history; with `performers`, their other procedures asked in the same
        batch where the EHR takes one (the result's `colleagues`)."""
        if self.gatherer is None:
            return None
        primed = self._primed(patient, date)
        if primed is not None and primed.history is not None:
            history = primed.history
            history.colleagues = self._primed_colleagues(performers or [], date)
            return history
        try:
            return self.gatherer.history(
                patient,
                date,
                self.ask,
                colleagues=self.gatherer.colleagues_query(performers, date) if performers else None,
            )
        except FhirError as exc:
            log.warning("reading the patient's history failed; episode rules not checked: %s", exc)
            self.error = str(exc)
            return None

    def colleagues(self, performers: list[str], date: str) -> Gathered | None:
        if self.gatherer is None:
            return None
        primed = self._primed_colleagues(performers, date)
        if primed is not None:
            return primed
        try:
            return self.gatherer.colleagues(performers, date)
        except FhirError as exc:
            if exc.status == 400:  # the server refuses the search itself: not checked
                log.warning("the EHR refused the search of the performers' services: %s", exc)
                return Gathered([], unread=("Procedure",))
            log.warning("reading the performers' other services failed: %s", exc)
            self.error = str(exc)
            return None

    def _primed(self, patient: str, date: str) -> Gathered | None:
        """The day's read when its batch carried riders for this patient and date."""
        if self.primed is None or self.primed[:2] != (patient, date):
            return None
        return self.primed[3]

    def _primed_colleagues(self, performers: list[str], date: str) -> Gathered | None:
        """The colleagues' search the day's batch answered, when it asked for every one of
        `performers` (the day read from the EHR may have more than the prefetch told)."""
        if self.primed is None or self.primed[1] != date:
            return None
        _, _, riders, gathered = self.primed
        if gathered.colleagues is None or not set(performers) <= set(riders.performers):
            return None
        return gathered.colleagues


def _wants_history(settings: Settings, visit: Visit) -> bool:
    """The visit's payer applies an episode rule (plan of care, progress reports, KX)."""
    payer = settings.payers.resolved(visit.payer)
    return bool(
        payer.plan_of_care_required or payer.progress_reports_required or payer.kx_threshold
    )


def decide_gathered(
    settings: Settings,
    resources: list[Json],
    encounter_id: str,
    reader: EhrReader | None = None,
) -> Decision:
    """The decision of the encounter's billing day among the resources read. With a reader,
    the performers' services for other patients are read (one search) for the one-on-one
    check, and, when the day's payer applies the episode rules (plan of care, progress reports,
    KX), the patient's history (one batch); without one, those checks say they were not made."""
    assembler = _day_read(settings, resources)
    visits = _day_of(assembler, encounter_id)
    refuse_too_large(settings, visits)  # before the EHR is asked for more
    if reader is None:
        return decide(settings, visits)
    first = visits[0]
    history = colleagues = None
    performers = _one_on_one_performers(visits, settings)
    if _wants_history(settings, first) and first.patient and first.date_of_service:
        # one round trip for both where the EHR takes a batch
        history = reader.history(first.patient, first.date_of_service, performers)
        colleagues = history.colleagues if history is not None else None
    if performers and first.date_of_service and colleagues is None:
        colleagues = reader.colleagues(performers, first.date_of_service)
        if colleagues is not None and colleagues.unread:
            colleagues = None  # the EHR does not search Procedure: not checked, never "none"
    if history is None and colleagues is None:
        return decide(settings, visits)
    # The same facts, with what was read besides: the day's visits built again from them
    if history is not None:
        assembler.history_read = True
        assembler.history_unread = history.unread
        for resource in history.resources:
            assembler.add_history(resource)
    if colleagues is not None:
        assembler.colleagues_read = True
        for resource in colleagues.resources:
            assembler.add_colleague(resource)
    return decide(settings, _day_of(assembler, encounter_id))


def _day_read(settings: Settings, resources: list[Json]) -> VisitAssembler:
    """The day's resources assembled, the history and the colleagues not read (yet)."""
    assembler = VisitAssembler(translate_tables(settings))
    assembler.history_read = assembler.colleagues_read = False  # not read unless asked
    for resource in resources:
        assembler.add(resource)
    return assembler


def _one_on_one_performers(visits: tuple[Visit, ...], settings: Settings) -> list[str]:
    """The performers of the day's one-on-one timed services (whose other patients matter)."""
    return sorted(
        {
            p.reference
            for v in visits
            for s in v.services
            if one_on_one(s.code, settings.catalog)
            for p in s.performers
            if p.reference and p.reference.startswith("Practitioner")
        }
    )


def _day_of(assembler: VisitAssembler, encounter_id: str) -> tuple[Visit, ...]:
    """The encounter's billing day among the assembled visits."""
    wanted = f"Encounter/{encounter_id}"
    visits = day_for(assembler.visits(), wanted)
    if visits is None:
        raise NotFound(f"{wanted} is not in the data read", 404)
    return visits


def run_report(run: DayRun) -> dict[str, Any]:
    """What one trigger came to: the day's report, what was written, the configuration used."""
    body = day_report(run.decision)
    body["written"] = {
        "sent": run.written,
        **(run.plan.summary() if run.plan else {}),
        "attempts": run.attempts,
        "paging_capped": run.capped,
    }
    body["configuration"] = run.configuration
    if run.alone:
        body["decided_alone"] = True
    if run.error:
        body["error"] = run.error
    return body


def days_between(gatherer: Gatherer, since: str, until: str | None) -> list[Json]:
    """One finished encounter of each billing day in the range (dates inclusive): the first
    listed of each patient and date of service; an encounter without either stands alone.
    (The listing reads encounters only; each day is then read whole in one search.) A listing
    longer than the page cap is an error, never a silent part of the range."""
    query = f"Encounter?status=finished&date=ge{since}&_count=100"
    if until:
        query += f"&date=le{until}"
    page = gatherer.client.search(query)
    if page.capped:
        span = f"{since} to {until}" if until else f"from {since}"
        raise ListingCapped(
            f"listing the finished encounters {span} stopped at the page cap "
            "(THERACHARGE_FHIR_PAGE_CAP): list fewer days at a time, or raise the cap"
        )
    days: dict[object, Json] = {}
    for resource in iter_resources(page.entries):
        if resource.get("resourceType") != "Encounter" or not resource.get("id"):
            continue
        key = _day_key(resource)
        days.setdefault(key, resource)
    return list(days.values())


def days_by_date(gatherer: Gatherer, since: date, until: date) -> Iterator[Json]:
    """days_between one date at a time (a backfill of months: each date's listing stays far
    under the page cap), each billing day once even when an encounter's period spans two."""
    seen: set[object] = set()
    day = since
    while day <= until:
        for encounter in days_between(gatherer, day.isoformat(), day.isoformat()):
            key = _day_key(encounter)
            if key not in seen:
                seen.add(key)
                yield encounter
        day += timedelta(days=1)


def _day_key(encounter: Json) -> object:
    patient, day = encounter_patient_and_date(encounter)
    return (patient, day) if patient and day else encounter["id"]


class ListingCapped(FhirError):
    """A listing of encounters stopped at the page cap: the range is not wholly listed."""
