"""Orchestration of the five stages: trigger → gather → translate → decide → render → deliver."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import IO

import orjson

from fhir_mappings.assemble import TranslateTables, VisitAssembler
from fhir_mappings.bundle_io import JsonArrayWriter, read_resources
from fhir_mappings.chargeitem import Definitions, RenderContext, transaction_entries
from fhir_mappings.strict import validation_error
from plugin.report import RunSummary, decision_report
from plugin.rules.decision import Decision, decide_visit
from plugin.settings import Settings


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
    (../shared/PERFORMANCE.md, "Garbage collection"). Reference counting still frees them.
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
        assembler.add(resource, full_url, validation_error(resource) if strict else None)
    ctx = render_context(settings, entered)
    summary = RunSummary()
    bundle = JsonArrayWriter(
        outputs.bundle, b'{"resourceType":"Bundle","type":"transaction","entry":[\n', b"\n]}\n"
    )
    report = JsonArrayWriter(outputs.report, b'{"encounters":[\n', b"\n],\n")
    for visit in assembler.visits():
        decision = decide_visit(
            visit, settings.catalog, settings.unit_parameters, settings.findings
        )
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
