"""Kinds of findings and the policy that says how serious each is (config/rules/findings.yaml)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from msgspec.structs import replace

from plugin.rules.visit import Finding, Severity


@dataclass(frozen=True, slots=True)
class FindingType:
    """What a finding code means: how serious by default, how to fix it, and why it matters."""

    code: str
    severity: Severity
    fix: str
    source: str
    title: str = ""  # what people read it as ("Supervising therapist not recorded")
    fixed_by: str = ""  # who can fix it, and where ("the therapist, in the chart")


# The findings that mean a service's minutes are not known (CMS Pub 100-04 ch.5 §20.2 C: units
# come from the minutes documented).
TIME_FINDINGS = ("time-missing", "time-invalid", "time-incomplete", "time-unreadable")


@dataclass(frozen=True, slots=True)
class FindingPolicy:
    """The registry of finding kinds, payers' severity overrides and the gap parameters."""

    types: Mapping[str, FindingType]
    max_service_minutes: int = 180
    review_minutes_per_unit: int = 15
    payer_overrides: Mapping[str, Mapping[str, Severity]] = field(default_factory=dict)

    def make(
        self, code: str, message: str, resource: str | None = None, element: str | None = None
    ) -> Finding:
        """A finding of a registered kind, with its default severity, fix and source."""
        kind = self.types[code]
        return Finding(
            code,
            kind.severity,
            message,
            resource,
            element,
            kind.fix,
            kind.source,
            title=kind.title,
            fixed_by=kind.fixed_by,
        )

    def for_payer(self, finding: Finding, payer: str | None) -> Finding:
        """The finding at the severity the payer sets for its code (its default otherwise)."""
        override = self.payer_overrides.get(payer or "", {}).get(finding.code)
        if override is None or override is finding.severity:
            return finding
        return replace(finding, severity=override)
