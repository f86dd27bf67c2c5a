"""The decision metrics, counted where a day's run ends (plugin.pipeline.service.execute), so
every trigger counts alike: the hook and the charges API, notifications, backfills, re-runs and
`process` (docs/operations.md "Metrics").

prometheus_client is imported by this module: a process that serves sets
PROMETHEUS_MULTIPROC_DIR before importing it (plugin/commands/main.py)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter

from plugin.deadline import OutOfTime
from plugin.gateway.errors import FhirError, TemporaryFhirError

DECISIONS = Counter("theracharge_charge_lines_total", "Charge lines decided, by status", ["status"])
GAPS = Counter("theracharge_findings_total", "Findings, by code and severity", ["code", "severity"])
EHR_ERRORS = Counter(
    "theracharge_ehr_errors_total",
    "Failed calls to the EHR: temporary, fatal, too-slow (the time budget ran out), write "
    "(a hook's write failed, the decision stands)",
    ["kind"],
)
_COUNTED = "_theracharge_counted"  # set on an exception once EHR_ERRORS has counted it


def child(metric: Any, *labels: str) -> Any:
    """A metric's child for these label values, looked up once per process (prometheus_client's
    own `labels()` checks and locks on every call; a hook call counts a dozen)."""
    key = (id(metric), labels)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*labels)
    return found


_CHILDREN: dict[tuple[int, tuple[str, ...]], Any] = {}


def count_decision(lines: list[Any], findings: list[Any]) -> None:
    """A day decided: its lines by status, its findings by code and severity."""
    for line in lines:
        child(DECISIONS, line.status.value).inc()
    for item in findings:
        child(GAPS, item.code, item.severity.value).inc()


def count_ehr_error(error: BaseException) -> None:
    """An EHR failure, once however many layers see it (the run that met it, then the web
    layer's error handler); anything else is not the EHR's and is not counted here."""
    if getattr(error, _COUNTED, False):
        return
    if isinstance(error, OutOfTime):
        kind = "too-slow"
    elif isinstance(error, TemporaryFhirError):
        kind = "temporary"
    elif isinstance(error, FhirError) and error.http_status == 502:
        kind = "fatal"
    else:
        return
    child(EHR_ERRORS, kind).inc()
    setattr(error, _COUNTED, True)


def count_write_failed() -> None:
    """A write the EHR refused, reported on the hook's cards rather than raised."""
    child(EHR_ERRORS, "write").inc()
