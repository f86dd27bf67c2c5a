"""Orchestration of the five stages: trigger → gather → translate → decide → render → deliver."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import IO, Any

import orjson

from fhir_mappings.assemble import InvalidResource, TranslateTables, VisitAssembler
from fhir_mappings.bundle_io import InputError, JsonArrayWriter, read_resources
from fhir_mappings.chargeitem import Definitions, RenderContext, transaction_entries
from fhir_mappings.delivery import WritePlan, our_charge_items, plan_writes
from fhir_mappings.strict import validation_error
from plugin.errors import VisitTooLarge
from plugin.gateway.client import iter_resources
from plugin.gateway.errors import FhirError, VersionConflict
from plugin.gateway.gather import Gatherer, NotFound
from plugin.report import RunSummary, decision_report
from plugin.rules.decision import Decision, decide_visit
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


def render_context(settings: Settings, entered: datetime) -> RenderContext:
    return RenderContext(Definitions(settings.extension_base), entered, agent_name())


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
    ctx = render_context(settings, entered)
    summary = RunSummary()
    bundle = JsonArrayWriter(
        outputs.bundle, b'{"resourceType":"Bundle","type":"transaction","entry":[\n', b"\n]}\n"
    )
    report = JsonArrayWriter(outputs.report, b'{"encounters":[\n', b"\n],\n")
    for visit in assembler.visits():
        try:
            decision = decide(settings, visit)
        except Exception as exc:  # noqa: BLE001 -- one visit never stops the file; reported
            summary.failures.append(f"{visit.encounter}: {failure_reason(exc)}")
            continue
        for entry in transaction_entries(decision, ctx):
            bundle.write(entry)
        report.write(decision_report(decision))
        summary.add(decision)
        if outputs.on_decision:
            outputs.on_decision(decision)
    summary.problems = list(assembler.problems)
    bundle.close()
    report.close()
    if outputs.report is not None:
        outputs.report.write(b'"summary":' + orjson.dumps(summary.as_json()) + b"}\n")
    return summary


# --- against a live EHR: gather → translate → decide → render → deliver -----------------------


@dataclass
class EncounterRun:
    """One encounter processed against the EHR."""

    decision: Decision
    plan: WritePlan
    written: bool  # the transaction was sent (False on a dry run or when nothing changed)
    attempts: int  # 1 + the times a concurrent change made us read and decide again
    capped: bool  # a search stopped at the page cap


MAX_CONFLICT_RETRIES = 3


def process_encounter(
    settings: Settings,
    gatherer: Gatherer,
    encounter_id: str,
    entered: datetime,
    dry_run: bool = False,
) -> EncounterRun:
    """Read one encounter, decide it, and write only the difference in one transaction.

    A version conflict (412: another run changed a ChargeItem since we read it) sends us back to
    read and decide again, a bounded number of times, so concurrent runs converge on exactly one
    ChargeItem per line. Raises plugin.gateway.errors.FhirError when the EHR fails.
    """
    client = gatherer.client
    ctx = render_context(settings, entered)
    attempt = 0
    while True:
        attempt += 1
        gathered = gatherer.encounter(encounter_id)
        decision = decide_gathered(settings, gathered.resources, encounter_id)
        existing = our_charge_items(gathered.resources, ctx.definitions.line_identifier)
        plan = plan_writes(decision, existing, ctx, client.base_url)
        if dry_run or plan.bundle is None:
            return EncounterRun(decision, plan, False, attempt, gathered.capped)
        try:
            client.transaction(plan.bundle)
        except VersionConflict:
            if attempt > MAX_CONFLICT_RETRIES:
                raise
            continue
        return EncounterRun(decision, plan, True, attempt, gathered.capped)


def decide_gathered(settings: Settings, resources: list[Json], encounter_id: str) -> Decision:
    assembler = VisitAssembler(translate_tables(settings))
    for resource in resources:
        assembler.add(resource)
    wanted = f"Encounter/{encounter_id}"
    visit = next((v for v in assembler.visits() if v.encounter == wanted), None)
    if visit is None:
        raise NotFound(f"{wanted} is not in the data read", 404)
    return decide(settings, visit)


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


def decide(settings: Settings, visit: Visit) -> Decision:
    """The decision of one visit; one with more procedures than the limit is refused whole."""
    limit = settings.service.max_procedures
    if len(visit.services) > limit:
        raise VisitTooLarge(visit.encounter, len(visit.services), limit)
    return decide_visit(visit, settings.catalog, settings.unit_parameters, settings.findings)


def run_report(run: EncounterRun) -> dict[str, Any]:
    """What one encounter came to: the decision's report and what was written."""
    plan = run.plan
    body = decision_report(run.decision)
    body["written"] = {
        "sent": run.written,
        **plan.summary(),
        "attempts": run.attempts,
        "paging_capped": run.capped,
    }
    return body


def encounters_between(gatherer: Gatherer, since: str, until: str | None) -> list[str]:
    """Ids of the finished encounters whose period falls in the range (dates inclusive)."""
    query = f"Encounter?status=finished&date=ge{since}&_count=100"
    if until:
        query += f"&date=le{until}"
    page = gatherer.client.search(query)
    return [
        str(r["id"]) for r in iter_resources(page.entries) if r.get("resourceType") == "Encounter"
    ]
