"""Payers and how each is billed: which unit method applies to a visit, and why."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from plugin.rules.model import Discipline, Method
from plugin.rules.visit import Role, Severity


@dataclass(frozen=True, slots=True)
class Payer:
    """A payer recognised by the identifiers on a Coverage's payor, billed by one method."""

    id: str
    name: str
    method: Method
    identifiers: tuple[tuple[str, str], ...]  # (system, value)
    source: str
    gap_severity: Mapping[str, Severity] = field(default_factory=dict)
    # Modifier policy: whether the payer wants the plan-of-care modifier (GP/GO/GN) on every
    # therapy line. Medicare requires it (Pub 100-04 ch.5 §20.1); other payers' contracts vary.
    plan_of_care_modifiers: bool = True
    # CQ/CO on units furnished in whole or in part by a PTA/OTA: Medicare's (Pub 100-04 ch.5
    # §20.1), and payers that adopt it; off unless the payer's entry turns it on.
    assistant_modifiers: bool = False
    # NCCI policy: whether the payer applies the CMS PTP and MUE edits (Medicare does; many
    # commercial payers adopt them), and which modifier bypasses a PTP edit for distinct time
    # intervals: XU (preferred since 2015) or 59 (NCCI Policy Manual ch.1 §E).
    ncci_edits: bool = True
    ptp_modifier: str = "XU"
    # Episode rules (Pub 100-02 ch.15 §220.1.3, §220.3 D; Pub 100-04 ch.5 §10.3): Medicare's,
    # off unless the payer's entry turns them on.
    plan_of_care_required: bool = False
    progress_reports_required: bool = False
    kx_threshold: bool = False
    # The code for services given to two or more patients at once (concurrent-patients
    # suggests it): 97150 for Medicare (Pub 100-02 ch.15 §230.1 A, §230.2 A)
    group_code: str = "97150"


# The payer of a visit whose Coverage names no payer of the table (or that has none): every
# policy at its default above — Medicare's modifiers (GP/GO/GN), the CMS NCCI edits with XU,
# 97150 for a group — and no CQ/CO or episode rule unless a payer's entry asks for them. Its
# method is the table's default (PayerTable.resolved).
DEFAULT_PAYER = Payer(
    id="default",
    name="no payer of the table",
    method=Method.CMS,
    identifiers=(),
    source="CMS Pub 100-04 ch.5 §20.1, §20.2; NCCI Policy Manual ch.1 §E",
)


@dataclass(frozen=True, slots=True)
class PayerTable:
    payers: tuple[Payer, ...]
    default_method: Method
    default_source: str

    def by_id(self, payer_id: str | None) -> Payer | None:
        return next((p for p in self.payers if p.id == payer_id), None)

    def resolved(self, payer_id: str | None) -> Payer:
        """The payer whose rules bill a visit of `payer_id`: its entry, else DEFAULT_PAYER
        under the table's default method."""
        found = self.by_id(payer_id)
        if found is not None:
            return found
        return Payer(
            id=DEFAULT_PAYER.id,
            name=DEFAULT_PAYER.name,
            method=self.default_method,
            identifiers=(),
            source=self.default_source,
        )

    def find(self, identifiers: Iterable[tuple[str, str]]) -> Payer | None:
        """The payer one of whose identifiers matches; None when no payer does."""
        wanted = set(identifiers)
        for payer in self.payers:
            if wanted.intersection(payer.identifiers):
                return payer
        return None


@dataclass(frozen=True, slots=True)
class CodingTables:
    """Admin tables from codings to performer roles and to disciplines."""

    roles: Mapping[tuple[str, str], Role]
    service_types: Mapping[tuple[str, str], Discipline]
    # CMS place of service by billing provider (Encounter.serviceProvider), else the default
    places_of_service: Mapping[str, str] = field(default_factory=dict)
    default_place_of_service: str = "11"
    # An assistant's supervising therapist when the record names none (config/roles.yaml
    # supervisors): assistant reference → therapist reference. Pub 100-02 ch.15 §230.1, §230.2.
    supervisors: Mapping[str, str] = field(default_factory=dict)
    # (system, code prefix, role): a NUCC taxonomy family (2251… physical therapists of every
    # specialisation), longest prefix first
    role_prefixes: tuple[tuple[str, str, Role], ...] = ()

    def role_of(self, system: str, code: str) -> Role | None:
        """The role of a coding: its exact entry, else the longest prefix entry of its system."""
        role = self.roles.get((system, code))
        if role is not None:
            return role
        for prefix_system, prefix, found in self.role_prefixes:
            if prefix_system == system and code.startswith(prefix):
                return found
        return None


@dataclass(frozen=True, slots=True)
class PractitionerTable:
    """The site's practitioners whose role the EHR does not say (config/practitioners.yaml):
    by reference ("Practitioner/x") or by NPI ("NPI|1234567893")."""

    roles: Mapping[str, Role] = field(default_factory=dict)
    source: str = ""
