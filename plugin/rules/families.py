"""Services gathered per group (patient, date, discipline, provider) and per code family."""

from __future__ import annotations

from collections.abc import Iterable

from plugin.rules.model import Catalog, CodeDefinition, GroupKey, Service


class Family:
    """The minutes of one code, or of a primary code and its add-on, within one group.

    An add-on's minutes belong to its primary (97130 to 97129): the pair is one intervention
    whose first unit bills the primary and the rest the add-on (CPT descriptors).
    """

    __slots__ = ("blocks", "code", "documented", "head", "minutes", "no_time", "order")

    def __init__(self, head: CodeDefinition, order: int) -> None:
        self.head = head
        self.code = head.code
        self.order = order  # position of its first service: the "documented first" tie-break
        self.minutes = 0
        self.blocks: list[int] = []
        self.documented: list[str] = []
        self.no_time: list[str] = []

    def add(self, code: str, minutes: int | None) -> None:
        if code not in self.documented:
            self.documented.append(code)
        if minutes is None:
            self.no_time.append(code)
        else:
            self.minutes += minutes
            self.blocks.append(minutes)


def group_key(service: Service, definition: CodeDefinition) -> GroupKey:
    """The group a service's minutes are totalled in: its discipline (else the code's first),
    date of service, patient and billing provider (CMS Pub 100-04 ch.5 §20.2 C, D)."""
    discipline = service.discipline or definition.disciplines[0]
    return GroupKey(discipline, service.date, service.patient, service.provider)


def gather(services: Iterable[Service], catalog: Catalog) -> dict[GroupKey, list[Family]]:
    """Group services by patient, date, discipline and provider, summing each code's minutes.

    A service without a discipline counts under its code's first catalog discipline.
    Source: CMS Pub 100-04 ch.5 §20.2 C, D; Pub 100-02 ch.15 §220.1.2; the same code in split
    blocks is summed (NCCI Policy Manual ch.1 §E).
    """
    codes = catalog.codes
    groups: dict[GroupKey, dict[str, Family]] = {}
    for position, service in enumerate(services):
        definition = codes[service.code]
        key = group_key(service, definition)
        families = groups.get(key)
        if families is None:
            families = groups[key] = {}
        head = codes[definition.primary] if definition.primary else definition
        family = families.get(head.code)
        if family is None:
            family = families[head.code] = Family(head, position)
        family.add(service.code, service.minutes)
    return {key: list(families.values()) for key, families in groups.items()}
