"""Orchestration of the five stages: trigger → gather → translate → decide → render → deliver."""

from __future__ import annotations

import gc
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version
from typing import IO, Any

import orjson

from fhir_mappings.assemble import InvalidResource, TranslateTables, VisitAssembler
from fhir_mappings.bundle_io import InputError, JsonArrayWriter, read_resources
from fhir_mappings.chargeitem import (
    Definitions,
    RenderContext,
    policy_uris,
    transaction_entries,
)
from fhir_mappings.delivery import WritePlan, our_charge_items, plan_writes
from fhir_mappings.strict import validation_error
from plugin.errors import VisitTooLarge
from plugin.gateway.client import iter_resources
from plugin.gateway.errors import FhirError, VersionConflict
from plugin.gateway.gather import Gatherer, NotFound, encounter_patient_and_date
from plugin.report import RunSummary, day_report, encounter_reports
from plugin.rules.day import day_for, days_of
from plugin.rules.decision import Decision, decide_day
from plugin.rules.visit import Visit
from plugin.settings import Settings

Json = dict[str, Any]
log = logging.getLogger(__name__)


def agent_name() -> str:
    try:
        return f"TheraCharge {version('theracharge')}"
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "TheraCharge"


def translate_tables(settings: Settings) -> TranslateTables:
    return TranslateTables(
        catalog=settings.catalog,
        code_map=settings.code_map,
        coding_tables=settings.coding_tables,
        payers=settings.payers,
        minutes_extension=settings.minutes_extension,
        findings=settings.findings,
        total_timed_extension=settings.total_timed_extension,
    )


def render_context(settings: Settings, entered: datetime, trigger: str = "") -> RenderContext:
    """How this run renders: our URLs, when it decided, who, why (the trigger's kind: the part
    before any `:caller`), and the configuration versions in force."""
    kind = trigger.split(":", 1)[0]
    versions = dict(settings.versions)
    policy = policy_uris(settings.extension_base, versions)
    return RenderContext(
        Definitions(settings.extension_base), entered, agent_name(), kind, versions, policy
    )


@dataclass
class OfflineOutputs:
    """Where an offline run writes: each may be None (not wanted)."""

    bundle: IO[bytes] | None = None
    report: IO[bytes] | None = None
    on_decision: Callable[[Decision], None] | None = None


def process_file(
    path: str, settings: Settings, outputs: OfflineOutputs, entered: datetime, strict: bool = False
) -> RunSummary:
    """Decide every visit of a Bundle or NDJSON file; stream the transaction and the report.

    Raises fhir_mappings.bundle_io.InputError for input that is not JSON or not FHIR; the caller
    discards partial outputs (bundle_io.atomic_output).
    """
    with _no_cyclic_gc():
        return _process(path, settings, outputs, entered, strict)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector during a batch.

    A batch allocates millions of small acyclic objects while holding the run's fact records;
    each full collection rescans all of them, which cost about half the run time here
    (docs/performance.md, "The service"). Reference counting still frees them.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _process(
    path: str, settings: Settings, outputs: OfflineOutputs, entered: datetime, strict: bool
) -> RunSummary:
    assembler = VisitAssembler(translate_tables(settings))
    for resource, full_url in read_resources(path):
        try:
            assembler.add(resource, full_url, validation_error(resource) if strict else None)
        except InvalidResource as exc:
            raise InputError(f"{path}: {exc}") from exc
    ctx = render_context(settings, entered, "file")
    summary = RunSummary()
    bundle = JsonArrayWriter(
        outputs.bundle, b'{"resourceType":"Bundle","type":"transaction","entry":[\n', b"\n]}\n"
    )
    report = JsonArrayWriter(outputs.report, b'{"encounters":[\n', b"\n],\n")
    for day in days_of(assembler.visits()):
        try:
            decision = decide(settings, day)
        except Exception as exc:  # noqa: BLE001 -- one day never stops the file; reported
            names = ", ".join(v.encounter for v in day)
            summary.failures.append(f"{names}: {failure_reason(exc)}")
            continue
        for entry in transaction_entries(decision, ctx):
            bundle.write(entry)
        for entry in encounter_reports(decision):
            report.write(entry)
        summary.add(decision)
        if outputs.on_decision:
            outputs.on_decision(decision)
    summary.problems = list(assembler.problems)
    bundle.close()
    report.close()
    if outputs.report is not None:
        outputs.report.write(b'"summary":' + orjson.dumps(summary.as_json()) + b"}\n")
    return summary


# --- one orchestrator for every trigger: gather the day → decide → plan → write -----------------


class WriteMode(StrEnum):
    PREVIEW = "preview"  # decide only (cards, a dry look)
    PLAN = "plan"  # decide and plan the writes against the EHR's ChargeItems; send nothing
    WRITE = "write"  # send the plan in one transaction


@dataclass
class DayRun:
    """What one trigger came to: the day's decision, the writes planned, what was sent."""

    decision: Decision
    plan: WritePlan | None  # None in preview
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
        return "unchanged" if self.plan.bundle is None else "planned"


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
) -> DayRun:
    """Decide the billing day of one encounter and bring the EHR's ChargeItems in line with it.

    Every trigger calls this (the hook, a notification, the CLI, a page, the charges API). A
    version conflict (412: another run changed a ChargeItem since we read it) sends us back to
    read the day from the EHR and decide again, a bounded number of times, so concurrent runs
    converge on exactly one ChargeItem per line. Raises plugin.gateway.errors.FhirError when the
    EHR fails (with `report_write_errors`, a failed write is returned in `error` instead).
    """
    ctx = render_context(settings, entered, trigger)
    configuration = dict(settings.versions)
    prefetched = source.prefetched
    attempt = 0
    while True:
        attempt += 1
        resources, capped, alone, unread = _read_day(source, prefetched, encounter_id)
        decision = decide_gathered(settings, resources, encounter_id)
        if mode is WriteMode.PREVIEW:
            return DayRun(decision, None, False, attempt, capped, alone, None, configuration)
        base = source.gatherer.client.base_url if source.gatherer else ""
        existing = our_charge_items(resources, ctx.definitions.line_identifier)
        plan = plan_writes(decision, existing, ctx, base)
        run = DayRun(decision, plan, False, attempt, capped, alone, None, configuration)
        if mode is WriteMode.PLAN or plan.bundle is None:
            return run
        try:
            if source.gatherer is None:
                raise DayUnreadable("no FHIR server to write to")
            if unread is not None:
                raise DayUnreadable(f"the patient's other visits of the day: {unread}")
            source.gatherer.client.transaction(plan.bundle)
        except VersionConflict:
            if attempt > MAX_CONFLICT_RETRIES:
                raise
            prefetched = None  # what was prefetched is out of date: read the day again
            continue
        except FhirError as exc:
            if not report_write_errors:
                raise
            run.error = str(exc)
            return run
        run.written = True
        return run


def _read_day(
    source: DaySource, prefetched: list[Json] | None, encounter_id: str
) -> tuple[list[Json], bool, bool, str | None]:
    """(resources, capped, decided alone, why the day could not be read)."""
    gatherer = source.gatherer
    if prefetched is None:
        if gatherer is None:
            raise DayUnreadable("no FHIR server to read the encounter from")
        if source.day is not None:
            gathered = gatherer.day(*source.day)
            if any(
                r.get("resourceType") == "Encounter" and r.get("id") == encounter_id
                for r in gathered.resources
            ):
                return gathered.resources, gathered.capped, False, None
            # the encounter moved to another day (or another patient) since it was named
        gathered = gatherer.encounter_day(encounter_id)
        return gathered.resources, gathered.capped, False, None
    patient, day = _patient_and_date(prefetched, encounter_id)
    if gatherer is None or patient is None or day is None:
        return prefetched, False, gatherer is None, None
    try:
        gathered = gatherer.day(patient, day)
    except FhirError as exc:
        log.warning("reading the day of Encounter/%s failed; decided alone: %s", encounter_id, exc)
        return prefetched, False, True, str(exc)
    return _merged(gathered.resources, prefetched), gathered.capped, False, None


def _patient_and_date(resources: list[Json], encounter_id: str) -> tuple[str | None, str | None]:
    encounter = next(
        (
            r
            for r in resources
            if r.get("resourceType") == "Encounter" and r.get("id") == encounter_id
        ),
        None,
    )
    return encounter_patient_and_date(encounter)


def _merged(read: list[Json], prefetched: list[Json]) -> list[Json]:
    """The EHR's resources, and the prefetched ones it did not return (the EHR's copy wins)."""
    have = {(r.get("resourceType"), r.get("id")) for r in read}
    return read + [r for r in prefetched if (r.get("resourceType"), r.get("id")) not in have]


def decide_gathered(settings: Settings, resources: list[Json], encounter_id: str) -> Decision:
    """The decision of the encounter's billing day among the resources read."""
    assembler = VisitAssembler(translate_tables(settings))
    for resource in resources:
        assembler.add(resource)
    wanted = f"Encounter/{encounter_id}"
    visits = day_for(assembler.visits(), wanted)
    if visits is None:
        raise NotFound(f"{wanted} is not in the data read", 404)
    return decide(settings, visits)


def failure_reason(error: BaseException) -> str:
    """What is recorded of a visit that could not be processed.

    Our own errors say what went wrong in words safe to keep (never a body or a token); any
    other is named by its type only (its text could quote the data), with the traceback in the
    service log.
    """
    if isinstance(error, FhirError | VisitTooLarge | InvalidResource):  # NotFound is a FhirError
        return str(error)
    log.error("processing a visit failed", exc_info=error)
    return f"internal error ({type(error).__name__}); see the service log"


def decide(settings: Settings, visits: tuple[Visit, ...]) -> Decision:
    """The decision of one billing day; a visit with more procedures than the limit is refused
    whole."""
    limit = settings.service.max_procedures
    for visit in visits:
        if len(visit.services) > limit:
            raise VisitTooLarge(visit.encounter, len(visit.services), limit)
    return decide_day(visits, settings.catalog, settings.unit_parameters, settings.findings)


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
    (The listing reads encounters only; each day is then read whole in one search.)"""
    query = f"Encounter?status=finished&date=ge{since}&_count=100"
    if until:
        query += f"&date=le{until}"
    page = gatherer.client.search(query)
    days: dict[object, Json] = {}
    for resource in iter_resources(page.entries):
        if resource.get("resourceType") != "Encounter" or not resource.get("id"):
            continue
        patient, day = encounter_patient_and_date(resource)
        key = (patient, day) if patient and day else resource["id"]
        days.setdefault(key, resource)
    return list(days.values())
