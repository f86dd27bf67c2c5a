"""The patient's Coverage and payer: which unit method a visit is billed by, and why."""

from __future__ import annotations

from collections.abc import Callable

from fhir_mappings import facts as fx
from fhir_mappings.fhirtime import FhirValueError, date_part
from plugin.rules.findings import FindingPolicy
from plugin.rules.model import Method
from plugin.rules.payers import PayerTable
from plugin.rules.visit import Finding


class Coverages:
    """Coverages by beneficiary and payer Organizations' identifiers, as they arrive."""

    def __init__(self) -> None:
        self.by_beneficiary: dict[str, list[fx.CoverageFacts]] = {}
        self.organizations: dict[str, tuple[tuple[str, str], ...]] = {}

    def add_coverage(self, coverage: fx.CoverageFacts) -> None:
        self.by_beneficiary.setdefault(coverage.beneficiary or "", []).append(coverage)

    def add_organization(self, key: str, identifiers: tuple[tuple[str, str], ...]) -> None:
        self.organizations[key] = identifiers

    def payer(
        self,
        patient: str | None,
        day: str | None,
        key: str,
        found: list[Finding],
        payers: PayerTable,
        findings: FindingPolicy,
        norm: Callable[[str | None], str | None],
    ) -> tuple[Method, str, str | None, str | None]:
        """The payer's unit method from the patient's primary Coverage in force on the day.

        Source: config/payers.yaml (each payer's method and its source).
        """
        coverage = _primary_coverage(self.by_beneficiary.get(patient or "", []), day)
        if coverage is None:
            found.append(
                findings.make(
                    "coverage-missing",
                    "No active Coverage for the patient on the "
                    f"date of service: billed by the default {payers.default_method} "
                    "method.",
                    key,
                    "Coverage",
                )
            )
            return payers.default_method, f"No Coverage: {payers.default_source}.", None, None
        identifiers = [pair for ref, inline in coverage.payors for pair in inline]
        identifiers += [
            pair
            for ref, _ in coverage.payors
            for pair in self.organizations.get(norm(ref) or "", ())
        ]
        payer = payers.find(identifiers)
        if payer is None:
            listed = ", ".join(f"{s}|{v}" for s, v in identifiers) or "no payor identifier"
            found.append(
                findings.make(
                    "payer-unknown",
                    f"Payer of {coverage.key} ({listed}) is not in "
                    f"the payer table: billed by the default {payers.default_method} "
                    "method.",
                    coverage.key,
                    "Coverage.payor",
                )
            )
            return (
                payers.default_method,
                f"Unknown payer: {payers.default_source}.",
                None,
                coverage.key,
            )
        reason = f"Payer {payer.name} bills by the {payer.method.value} method: {payer.source}."
        return payer.method, reason, payer.id, coverage.key


def _primary_coverage(
    coverages: list[fx.CoverageFacts], day: str | None
) -> fx.CoverageFacts | None:
    """The active coverage in force on the day with the lowest `order` (the primary payer)."""
    usable = [c for c in coverages if c.status in (None, "active") and _covers(c, day)]
    return min(usable, key=lambda c: c.order) if usable else None


def _covers(coverage: fx.CoverageFacts, day: str | None) -> bool:
    if day is None:
        return True
    try:
        starts = coverage.period_start is None or date_part(coverage.period_start) <= day
        ends = coverage.period_end is None or date_part(coverage.period_end) >= day
    except FhirValueError:
        return False
    return starts and ends
