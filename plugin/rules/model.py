"""Plain data the billing core works on: disciplines, catalog codes, services, unit results."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from plugin.rules.records import Record


class Discipline(StrEnum):
    """The plan of care a service was delivered under (Pub 100-02 ch.15 §220.1.2)."""

    PT = "PT"
    OT = "OT"
    SLP = "SLP"


class Role(StrEnum):
    """Who performed a service or wrote a report (Pub 100-02 ch.15 §230; §220.3 D: a physician
    or NPP is a clinician who may write progress reports)."""

    PT = "PT"
    PTA = "PTA"
    OT = "OT"
    OTA = "OTA"
    SLP = "SLP"
    AIDE = "aide"
    PHYSICIAN = "physician"  # a physician or non-physician practitioner (NP, PA, CNS)
    OTHER = "other"


ROLE_DISCIPLINE = {
    Role.PT: Discipline.PT,
    Role.PTA: Discipline.PT,
    Role.OT: Discipline.OT,
    Role.OTA: Discipline.OT,
    Role.SLP: Discipline.SLP,
}
# The therapists and the assistants apart, with their discipline (Pub 100-02 ch.15 §230.1-230.3:
# PTAs and OTAs work under a therapist of their discipline; SLP has no assistant benefit)
THERAPIST_OF = {Role.PT: Discipline.PT, Role.OT: Discipline.OT, Role.SLP: Discipline.SLP}
ASSISTANT_OF = {Role.PTA: Discipline.PT, Role.OTA: Discipline.OT}


class CodeKind(StrEnum):
    """How a code's units are counted (CPT descriptors; CMS Pub 100-04 ch.5 §20.2 A/B)."""

    TIMED_15 = "timed-15"  # 15-minute units, pooled under the Medicare 8-minute rule
    UNTIMED = "untimed"  # 1 unit per day per discipline, whatever the time
    TIMED_INCREMENT = "timed-increment"  # a first increment other than 15 minutes, then add-ons
    ADDON = "addon"  # "each additional" increment of a primary code


# The kinds whose minutes are pooled under the 8-minute rule: 15-minute codes and the add-ons
# of 15-minute primaries (CMS Pub 100-04 ch.5 §20.2 C).
POOLED_KINDS = (CodeKind.TIMED_15, CodeKind.ADDON)


class Method(StrEnum):
    """How a payer turns minutes into units."""

    CMS = "cms"  # total timed minutes, CMS Pub 100-04 ch.5 §20.2 C
    AMA = "ama"  # per code, CPT time rule


class TieBreak(StrEnum):
    """Deterministic orderings for codes whose leftover minutes are equal.

    CMS leaves the choice to the qualified professional (Pub 100-04 ch.5 §20.2 C Examples 2
    and 5); these rules make our choice repeatable, and every other valid choice is reported.
    """

    MOST_MINUTES = "most-minutes"  # the code with more documented minutes first
    INPUT_ORDER = "input-order"  # the code documented first
    CODE = "code"  # the lower code first


@dataclass(frozen=True, slots=True)
class CodeDefinition:
    """One CPT/HCPCS code of the catalog, with how its units are counted."""

    code: str
    system: str
    label: str
    kind: CodeKind
    disciplines: tuple[Discipline, ...]
    source: str
    addon: str | None = None  # add-on code that takes the units past the first
    primary: str | None = None  # for an add-on: the code that takes the first unit
    first_minutes: int = 15  # length of the first unit's increment
    addon_minutes: int = 15  # length of each add-on increment
    body_site: bool = False  # the record must name the body part treated
    supervised: bool = False  # a supervised modality: may share minutes with another service
    # an evaluation, re-evaluation or assessment: the therapist's own service, never an
    # assistant's (Pub 100-02 ch.15 §230.1 B, §230.2 B)
    evaluative: bool = False

    @property
    def is_timed(self) -> bool:
        return self.kind is not CodeKind.UNTIMED


@dataclass(frozen=True, slots=True)
class Catalog:
    """The code catalog, by code."""

    codes: Mapping[str, CodeDefinition]

    def __contains__(self, code: object) -> bool:
        return code in self.codes

    def __getitem__(self, code: str) -> CodeDefinition:
        return self.codes[code]

    def __iter__(self) -> Iterator[CodeDefinition]:
        return iter(self.codes.values())


# The records made per service and per step (a service, its group, a unit line, a group's
# units …) are Records (plugin/rules/records.py), msgspec Structs: immutable, and cheaper to
# build than a NamedTuple (about 70 ns against 250 compiled) or a frozen dataclass (550), and to
# copy with changes (bench/bench_units.py). An Explanation, made per step of the explanation and
# rendered as it is, stays a NamedTuple.


class Explanation(NamedTuple):
    """One step of a decision, in plain words, with the rule source it follows."""

    text: str
    source: str


class Service(Record, frozen=True, gc=False):
    """One documented therapy service: a code and its minutes (None when no time was given)."""

    code: str
    minutes: int | None = None
    discipline: Discipline | None = None
    date: str | None = None
    patient: str | None = None
    provider: str | None = None


class GroupKey(Record, frozen=True, gc=False):
    """Minutes are totalled per patient, date of service, discipline and billing provider.

    Source: CMS Pub 100-04 ch.5 §20.2 C, D; Pub 100-02 ch.15 §220.1.2.
    """

    discipline: Discipline
    date: str | None = None
    patient: str | None = None
    provider: str | None = None


class UnitLine(Record, frozen=True, gc=False):
    """Units for one code within one group."""

    code: str
    kind: CodeKind
    minutes: int
    units: int
    derived_from: str | None = None  # set on an add-on line split off its primary's minutes


class GroupUnits(Record, frozen=True, gc=False):
    """The units of one group (patient, date, discipline, provider) under one method."""

    key: GroupKey
    method: Method
    total_timed_minutes: int
    total_treatment_minutes: int
    total_timed_units: int
    lines: tuple[UnitLine, ...]
    alternatives: tuple[Mapping[str, int], ...] = ()
    explanation: tuple[Explanation, ...] = ()


class UnitsResult(Record, frozen=True, gc=False):
    """Units for every group of a set of services."""

    method: Method
    groups: tuple[GroupUnits, ...] = ()

    @property
    def total_timed_minutes(self) -> int:
        return sum(g.total_timed_minutes for g in self.groups)

    @property
    def total_treatment_minutes(self) -> int:
        return sum(g.total_treatment_minutes for g in self.groups)

    @property
    def total_timed_units(self) -> int:
        return sum(g.total_timed_units for g in self.groups)
