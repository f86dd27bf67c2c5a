"""One run of a billing day, whatever starts it (docs/architecture.md "One run of a day").

Every trigger — the CDS hook, the charges API, a FHIR Subscription notification, a backfill's
day, a page's re-run, `theracharge process` — describes what it wants as a `Job` and hands it
to `execute`, which owns everything around `run_day`: the settings in force now (the managed
tables as the database holds them), the EHR connection, the billing day's lock when the run
writes, the decision metrics and the EHR's failures, and the run ledger's row. A trigger adds
only what is its own: the hook's cards, a task's claim and retries, a command's report.

`run_jobs` is the one local executor of non-interactive runs: `process --since` and, without a
broker, `backfill` give it their days and a worker count (`--jobs`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from plugin.errors import Invalid
from plugin.gateway.gather import Gatherer, encounter_patient_and_date
from plugin.jsontypes import Json
from plugin.pipeline.billing_day import DayRun, DaySource, WriteMode, run_day
from plugin.pipeline.metrics import count_decision, count_ehr_error, count_write_failed
from plugin.pipeline.runtime import Runtime


@dataclass(frozen=True)
class Job:
    """One billing day to run, as a trigger asks for it.

    `trigger` is the ledger's word for who asked (cds-hook, notification, backfill,
    page:<who>, api:<who>, cli). `day` names the billing day ("Patient/123|2026-11-02") when
    the trigger already knows it, so the day is read in one search. `source` replaces our own
    EHR connection where the caller has its own: a hook's prefetch, or the allow-listed
    fhirServer it names. `proposes`: a plan is sent back to the EHR to apply (the hook's
    systemActions) rather than being a dry run. `outcome` replaces the ledger's word (a hook
    answered from its prefetch: deferred). `wait`: the ledger row is on the table before
    `execute` returns, for a caller whose next request reads it back."""

    encounter_id: str
    trigger: str
    mode: WriteMode = WriteMode.WRITE
    day: str | None = None
    source: DaySource | None = None
    report_write_errors: bool = False
    proposes: bool = False
    outcome: str | None = None
    wait: bool = False
    entered: datetime | None = None

    def ledger_outcome(self, run: DayRun) -> str:
        """The run ledger's word for this run: written, unchanged, failed, system-actions
        (a plan proposed to the EHR), preview (decided only, or a dry run: nothing written
        or proposed; kept only with THERACHARGE_LEDGER_KEEP_PREVIEW) or the job's own."""
        if self.outcome is not None:
            return self.outcome
        if self.mode is WriteMode.PLAN and not self.proposes and not run.error:
            return "preview"
        if run.outcome == "planned":
            return "system-actions"
        return run.outcome


class NoEhr(Invalid):
    """Nothing to read the day from: trying again cannot help until an admin configures it."""


def execute(runtime: Runtime, job: Job) -> DayRun:
    """Run the job's billing day: decide it with the settings in force now, plan the writes
    and send them (holding the day's lock) as the job's mode says, count it, and record it in
    the run ledger. Raises what `run_day` raises (plugin.gateway.errors.FhirError when the EHR
    fails, plugin.deadline.OutOfTime when the time budget runs out), counted first."""
    settings = runtime.current()
    source = job.source or DaySource.named(ehr(runtime), job.day)
    try:
        run = run_day(
            settings,
            job.encounter_id,
            source,
            job.mode,
            job.entered or datetime.now().astimezone(),
            job.trigger,
            report_write_errors=job.report_write_errors,
            lock=runtime.store.day_locks.hold,  # held only when the run writes
            outlet=runtime.outlet(settings),
        )
    except Exception as exc:
        count_ehr_error(exc)
        raise
    count_decision(list(run.decision.lines), list(run.decision.findings))
    if run.error:
        count_write_failed()
    runtime.record(job.encounter_id, job.trigger, run, job.ledger_outcome(run), wait=job.wait)
    return run


def ehr(runtime: Runtime) -> Gatherer:
    """Our EHR's connection (this thread's), or NoEhr when none is configured."""
    gatherer = runtime.gatherer()
    if gatherer is None:
        raise NoEhr("no EHR configured (THERACHARGE_FHIR_BASE_URL)")
    return gatherer


def day_of(encounter: Json | None) -> str | None:
    """The billing day an Encounter names ("Patient/123|2026-11-02": its subject and the date
    its period starts) for a Job's `day`; None when it lacks either (the run reads the
    encounter first)."""
    patient, date = encounter_patient_and_date(encounter)
    return f"{patient}|{date}"[:300] if patient and date else None


Item = TypeVar("Item")
Result = TypeVar("Result")


def run_jobs(
    items: Iterable[Item], work: Callable[[Item], Result], workers: int
) -> Iterator[tuple[Item, Result | Exception]]:
    """Each item's result (or what stopped it), `workers` at a time, in the order given: the
    local executor of non-interactive runs. One failing item never stops the others."""
    listed = list(items)
    if workers <= 1 or len(listed) <= 1:  # one at a time: in this thread, no hand-off per item
        for item in listed:
            yield item, _outcome(work, item)
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(listed))) as pool:
        futures = [pool.submit(_outcome, work, item) for item in listed]
        for item, future in zip(listed, futures, strict=True):
            yield item, future.result()


def _outcome(work: Callable[[Item], Result], item: Item) -> Result | Exception:
    try:
        return work(item)
    except Exception as exc:  # noqa: BLE001 -- reported with the item, by the caller
        return exc
