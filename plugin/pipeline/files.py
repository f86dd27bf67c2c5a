"""A Bundle or NDJSON file of visits decided offline: grouped into billing days, the transaction
and the report streamed out (`theracharge process --bundle`)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import IO

import orjson

from fhir_mappings.assemble import InvalidResource, VisitAssembler
from fhir_mappings.bundle_io import InputError, JsonArrayWriter, read_resources
from fhir_mappings.chargeitem import transaction_entries
from fhir_mappings.strict import validation_error
from plugin.config.files import Settings
from plugin.pipeline.stages import decide, failure_reason, render_context, translate_tables
from plugin.render.report import RunSummary, encounter_reports
from plugin.rules.day import days_of
from plugin.rules.decision import Decision


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
