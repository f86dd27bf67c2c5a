"""One-on-one across patients: a timed code billed one-on-one means the therapist was with that
patient alone. The same performer's one-on-one timed services for two patients in the same
minutes cannot both be one-on-one (CMS Pub 100-04 ch.5 §20.2 A); the payer's group code
(97150: Pub 100-02 ch.15 §230.1 A, §230.2 A) describes them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from msgspec.structs import replace

from plugin.rules.findings import FindingPolicy
from plugin.rules.model import POOLED_KINDS, Catalog
from plugin.rules.visit import Finding, Visit, VisitService

_MINUTE = timedelta(minutes=1)
NAMED = 3  # other services named one by one in a finding; past it, how many


def one_on_one(code: str | None, catalog: Catalog) -> bool:
    """A code billed for direct one-on-one contact: 15-minute timed codes and their add-ons,
    supervised modalities excepted (they need no constant attendance)."""
    definition = catalog.codes.get(code or "")
    return bool(definition and definition.kind in POOLED_KINDS and not definition.supervised)


def concurrent_gaps(
    service: VisitService, visit: Visit, catalog: Catalog, policy: FindingPolicy
) -> list[Finding]:
    """`concurrent-patients` when a performer of this one-on-one timed service has a one-on-one
    timed service of another patient that shares at least one whole minute with it."""
    if (
        visit.colleagues is None
        or service.start is None
        or service.end is None
        or not one_on_one(service.code, catalog)
    ):
        return []
    mine = {p.reference for p in service.performers if p.reference}
    overlapping = [
        (other, _minutes(max(service.start, other.start), min(service.end, other.end)))
        for other in visit.colleagues
        if other.performer in mine
        and other.patient != visit.patient
        and one_on_one(other.code, catalog)
        and min(service.end, other.end) - max(service.start, other.start) >= _MINUTE
    ]
    if not overlapping:
        return []
    named = ", ".join(
        f"{o.code} ({o.reference}) by {m} minutes, both by {o.performer}"
        for o, m in overlapping[:NAMED]
    )
    more = f" and {len(overlapping) - NAMED} more" if len(overlapping) > NAMED else ""
    finding = policy.make(
        "concurrent-patients",
        f"{service.code} is billed one-on-one, but its performer treated another patient in the "
        f"same minutes: {named}{more}. Bill both patients' services as {visit.group_code} "
        "(group therapy) if they were treated together.",
        service.reference,
        "Procedure.performedPeriod",
    )
    return [replace(finding, suggested_code=visit.group_code)]


def _minutes(start: datetime, end: datetime) -> int:
    return int((end - start).total_seconds() // 60)
