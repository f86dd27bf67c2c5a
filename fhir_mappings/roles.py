"""Who a performer (or a report's writer) is: the role read where EHRs write it.

First found, each coding through the role table (config/roles.yaml `roles`: by code, or by a
NUCC taxonomy prefix where an entry says `match: prefix`):
1. `Procedure.performer.function` (the procedure says it; Oracle Health's own code set here);
2. the actor's PractitionerRole `specialty`: the NUCC provider taxonomy, must-support in US Core
   6.1.0 and 7.0.0 (StructureDefinition us-core-practitionerrole);
3. its `code`: NUCC up to US Core 5.0.1, Care Team Member Function (SNOMED CT occupations)
   from US Core 6.1.0;
4. the Practitioner's `qualification` codes (NUCC);
5. the site's table of practitioners (config/practitioners.yaml, managed): by reference, else
   by NPI.
A practitioner with PractitionerRoles of different roles takes the one of the service's
discipline; when that does not decide, the role is ambiguous (held: it may be an assistant's).
A role resource whose elements do not have their FHIR shape is said, naming the element.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from fhir_mappings import facts as fx
from plugin.rules.model import ROLE_DISCIPLINE, Discipline, Role
from plugin.rules.payers import CodingTables
from plugin.rules.systems import NPI


class RoleFound(NamedTuple):
    """A role as read: the role, the coding it was read from, and where (for the explanation);
    or, with no role, why none could be told (`problem`) and the roles that conflict."""

    role: Role | None
    coding: tuple[str, str] | None = None
    where: str = ""
    problem: str = ""
    ambiguous: tuple[Role, ...] = ()


class _RoleResource(NamedTuple):
    key: str
    practitioner: str | None
    specialty: tuple[fx.CodingTuple, ...]
    code: tuple[fx.CodingTuple, ...]
    malformed: str  # the element that does not have its FHIR shape, or ""


def _concepts(
    resource: dict[str, Any], element: str, key: str
) -> tuple[tuple[fx.CodingTuple, ...], str]:
    """The codings of a list of CodeableConcepts, and the element named when it is no list of
    objects."""
    value = resource.get(element)
    if value is None:
        return (), ""
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        return (), f"{key}.{element} is not a list of CodeableConcepts"
    return tuple(c for concept in value for c in fx.codings(concept)), ""


class Roles:
    """The PractitionerRoles and Practitioners read, and the role of an actor."""

    def __init__(
        self,
        tables: CodingTables,
        practitioners: Mapping[str, Role],
        norm: Callable[[str | None], str | None],
    ) -> None:
        self.tables = tables
        self.practitioners = practitioners  # reference or "NPI|value" → role (the site's table)
        self.norm = norm
        self._by_key: dict[str, _RoleResource] = {}
        self._by_practitioner: dict[str, list[str]] = {}
        self._qualifications: dict[str, tuple[tuple[fx.CodingTuple, ...], str]] = {}
        self._npis: dict[str, str] = {}

    def clear(self) -> None:
        for container in (self._by_key, self._by_practitioner, self._qualifications, self._npis):
            container.clear()

    def add_role(self, resource: dict[str, Any], key: str) -> None:
        specialty, bad_specialty = _concepts(resource, "specialty", key)
        code, bad_code = _concepts(resource, "code", key)
        malformed = bad_specialty or bad_code
        practitioner = resource.get("practitioner")
        if practitioner is not None and not isinstance(practitioner, dict):
            malformed = malformed or f"{key}.practitioner is not a Reference"
        ref = self.norm(fx.reference(practitioner))
        self._by_key[key] = _RoleResource(key, ref, specialty, code, malformed)
        if ref:
            self._by_practitioner.setdefault(ref, []).append(key)

    def add_practitioner(self, resource: dict[str, Any], key: str) -> None:
        found: list[fx.CodingTuple] = []
        malformed = ""
        qualifications = resource.get("qualification")
        if qualifications is not None and not isinstance(qualifications, list):
            malformed = f"{key}.qualification is not a list"
        for qualification in qualifications if isinstance(qualifications, list) else ():
            if isinstance(qualification, dict):
                found += fx.codings(qualification.get("code"))
        self._qualifications[key] = (tuple(found), malformed)
        for ident in resource.get("identifier") or ():
            if isinstance(ident, dict) and ident.get("system") == NPI and ident.get("value"):
                self._npis[key] = str(ident["value"])

    def _lookup(self, codings: tuple[fx.CodingTuple, ...]) -> tuple[Role, tuple[str, str]] | None:
        for system, code, _ in codings:
            role = self.tables.role_of(system, code)
            if role is not None:
                return role, (system, code)
        return None

    def role(
        self,
        functions: tuple[fx.CodingTuple, ...],
        actor: str | None,
        disciplines: tuple[Discipline, ...] = (),
    ) -> RoleFound:
        """The actor's role, first found (the module's order); `disciplines`: the service's
        possible disciplines, which decide between two roles of one practitioner."""
        found = self._lookup(functions)
        if found is not None:
            return RoleFound(found[0], found[1], "Procedure.performer.function")
        if actor is None:
            return RoleFound(None, problem="no actor recorded")
        resources = [self._by_key[actor]] if actor in self._by_key else []
        practitioner = resources[0].practitioner if resources else actor
        if not resources and practitioner:
            resources = [self._by_key[k] for k in self._by_practitioner.get(practitioner, ())]
        problems = [r.malformed for r in resources if r.malformed]
        candidates: dict[Role, RoleFound] = {}
        for resource in resources:
            for element, codings in (("specialty", resource.specialty), ("code", resource.code)):
                hit = self._lookup(codings)
                if hit is not None:
                    candidates.setdefault(
                        hit[0], RoleFound(hit[0], hit[1], f"{resource.key}.{element}")
                    )
                    break
        if len(candidates) == 1:
            return next(iter(candidates.values()))
        if len(candidates) > 1:
            fitting = [
                c for role, c in candidates.items() if ROLE_DISCIPLINE.get(role) in disciplines
            ]
            if len(fitting) == 1:
                chosen = fitting[0]
                others = ", ".join(sorted(r.value for r in candidates if r is not chosen.role))
                return chosen._replace(
                    where=f"{chosen.where}, the role of the service's discipline (also {others})"
                )
            roles = tuple(sorted(candidates, key=lambda r: r.value))
            return RoleFound(
                None,
                problem=f"{practitioner} has PractitionerRoles of "
                f"{' and '.join(r.value for r in roles)}, and the service's discipline does not "
                "tell which one furnished it",
                ambiguous=roles,
            )
        if practitioner:
            codings, malformed = self._qualifications.get(practitioner, ((), ""))
            if malformed:
                problems.append(malformed)
            hit = self._lookup(codings)
            if hit is not None:
                return RoleFound(hit[0], hit[1], f"{practitioner}.qualification")
            listed = self.practitioners.get(practitioner)
            if listed is not None:
                return RoleFound(listed, None, f"the site's practitioner table ({practitioner})")
            npi = self._npis.get(practitioner)
            listed = self.practitioners.get(f"NPI|{npi}") if npi else None
            if listed is not None:
                return RoleFound(listed, None, f"the site's practitioner table (NPI {npi})")
        if problems:
            return RoleFound(None, problem="; ".join(problems))
        return RoleFound(None, problem=f"no known role for {actor}")
