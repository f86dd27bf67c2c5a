"""From any set of R4 resources to one `Visit` per Encounter (the `translate` stage).

Resources arrive one at a time (a Bundle's entries, NDJSON lines) and are kept as small fact
records; `visits()` then joins them. A problem in one resource becomes a finding of its visit;
the other visits are unaffected.
"""

from __future__ import annotations

import sys
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from msgspec.structs import replace

from fhir_mappings import facts as fx
from fhir_mappings.coverage import Coverages
from fhir_mappings.fhirtime import FhirValueError, date_part, first_day, parse_instant
from fhir_mappings.history import EpisodeFacts
from fhir_mappings.minutes import procedure_timing
from fhir_mappings.people import People
from fhir_mappings.roles import RoleFound, Roles
from fhir_mappings.strict import validation_error
from plugin.errors import Invalid
from plugin.rules.code_mapping import CodeMap, Resolution, resolve_code
from plugin.rules.concurrency import one_on_one
from plugin.rules.episode import EpisodeRules
from plugin.rules.findings import TIME_FINDINGS, FindingPolicy
from plugin.rules.history import GoalFacts, History, OtherService
from plugin.rules.model import ASSISTANT_OF, THERAPIST_OF, Catalog, CodeKind, Discipline
from plugin.rules.payers import CodingTables, PayerTable, PractitionerTable
from plugin.rules.systems import ICD10CM, PLACE_OF_SERVICE
from plugin.rules.visit import (
    ROLE_DISCIPLINE,
    Coding,
    Diagnosis,
    Finding,
    Identifier,
    Measure,
    Performer,
    Visit,
    VisitService,
)


@dataclass(frozen=True, slots=True)
class TranslateTables:
    """What translation reads from settings."""

    catalog: Catalog
    code_map: CodeMap
    coding_tables: CodingTables
    payers: PayerTable
    minutes_extension: str
    findings: FindingPolicy
    total_timed_extension: str
    episode: EpisodeRules | None = None  # what a progress report is, the certification extension
    practitioners: PractitionerTable = field(default_factory=PractitionerTable)  # site table


# How many distinct codings an assembler remembers the resolution of (a file has a few dozen)
MAX_CODINGS = 4096


class _PerformerServices:
    """One performer's services, sorted by start, searched for those overlapping a period:
    a performer with months of services in a file is looked through by bisection, not whole."""

    __slots__ = ("longest", "services", "starts")

    def __init__(self, services: list[OtherService]) -> None:
        services.sort(key=lambda s: s.start)
        self.services = services
        self.starts = [s.start for s in services]
        self.longest = max(s.end - s.start for s in services)

    def overlapping(self, start: datetime, end: datetime) -> Iterator[OtherService]:
        """The services sharing a moment with [start, end): none starting at or after `end`,
        none ending at or before `start` (so none starting a whole `longest` before it)."""
        try:
            earliest = start - self.longest
        except OverflowError:  # a period at the calendar's first day: from the first service
            earliest = datetime.min.replace(tzinfo=start.tzinfo)
        first = bisect_left(self.starts, earliest)
        for other in self.services[first:]:
            if other.start >= end:
                break
            if other.end > start:
                yield other


PerformerIndex = dict[str, _PerformerServices]


def _union(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The moments of some of the periods, as disjoint periods in order (those that touch or
    overlap merged): a visit's services met once each, so the other patients' services are
    compared with its few stretches, not each with each of its services (n × m)."""
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


class InvalidResource(Invalid, ValueError):
    """A resource whose elements do not have their FHIR R4 shape, so its visit cannot be read
    (422); the message names the resource and, where the R4B model can tell, the element."""

    def __init__(self, key: str, why: str) -> None:
        message = f"{key} is not valid FHIR R4: {why}"
        super().__init__(message, [(key, message)])
        self.key = key


class VisitAssembler:
    """Collects resources, then builds the visits. Not thread-safe: one per run."""

    def __init__(self, tables: TranslateTables) -> None:
        self.tables = tables
        self.problems: list[Finding] = []  # findings that belong to no visit
        self._aliases: dict[str, str] = {}
        self._encounters: dict[str, fx.EncounterFacts] = {}
        self._procedures: list[fx.ProcedureFacts] = []
        self._conditions: dict[str, tuple[fx.CodingTuple, ...]] = {}
        self._coverages = Coverages()
        self._roles = Roles(tables.coding_tables, tables.practitioners.roles, self.norm)
        self._observations: dict[str, list[Measure]] = {}
        self._goals: dict[str, list[GoalFacts]] = {}
        self._places: dict[str, str] = {}  # Location → its CMS place-of-service code
        self._people = People()  # patients' names and MRNs, practitioners' names and NPIs
        self._invalid: dict[str, str] = {}  # strict mode: key → what the R4B model rejected
        # The patients' episode of care (plugin.rules.episode), by patient; `history_read`
        # False: the caller could not read it (visits then carry history None)
        self.history_read = True
        self.history_unread: tuple[str, ...] = ()  # types the EHR would not let us search
        self._days_by_patient: dict[str | None, list[tuple[date, Discipline | None]]] | None = None
        self._history_encounters: list[fx.EncounterFacts] = []
        # Other patients' procedures by the same performers (one-on-one across patients): in a
        # file, every procedure of the file; from the EHR, one search by performer and date
        # (`add_colleague`). `colleagues_read` False: not read, the check is not made.
        self.colleagues_read = True
        self._elsewhere: list[fx.ProcedureFacts] = []
        self._by_performer: PerformerIndex | None = None
        self._codes: dict[str, Resolution] = {}  # procedure → its billing code, resolved once
        self._by_codings: dict[tuple[fx.CodingTuple, ...], Resolution] = {}  # codings → the same
        self._episode = EpisodeFacts(tables.episode, tables.coding_tables.service_types, self.norm)

    # --- collecting -------------------------------------------------------------------------

    def add(
        self, resource: dict[str, Any], full_url: str | None = None, invalid: str | None = None
    ) -> None:
        """Take one resource; `invalid` is what strict validation found wrong with it."""
        kind = resource.get("resourceType")
        key = self._key(resource, full_url)
        if full_url:
            self._aliases[full_url] = key
        if invalid:
            self._invalid[key] = invalid
        try:
            self._take(kind, resource, key)
        except (TypeError, AttributeError, ValueError, KeyError) as exc:
            # An element of the wrong shape (a list where an object belongs, a number for a
            # string …): the visit cannot be read, and a guess would bill it wrong.
            raise InvalidResource(key, validation_error(resource) or type(exc).__name__) from exc

    def add_history(self, resource: dict[str, Any]) -> None:
        """Take a resource of the patient's history (an earlier encounter, a care plan, a
        progress report, a charge of the year): it informs the episode rules, never becomes a
        visit of its own."""
        kind = resource.get("resourceType")
        key = self._key(resource, None)
        try:
            if kind == "Encounter":
                self._history_encounters.append(
                    fx.encounter_facts(resource, key, self.tables.total_timed_extension)
                )
            elif kind == "Procedure":
                self._episode.is_report(resource, key)  # recorded when it is one; never a service
            elif kind in (
                "ChargeItem", "CarePlan", "Observation", "DocumentReference", "PractitionerRole",
                "Practitioner", "Provenance", "ServiceRequest", "Communication",
            ):  # fmt: skip
                self._take(kind, resource, key)
        except (TypeError, AttributeError, ValueError, KeyError) as exc:
            raise InvalidResource(key, validation_error(resource) or type(exc).__name__) from exc

    def add_colleague(self, resource: dict[str, Any], full_url: str | None = None) -> None:
        """Take a procedure of another patient by a performer of the day (read from the EHR,
        or a file's first pass, `own_colleagues`): it informs the one-on-one check, never
        becomes a service of a visit."""
        if resource.get("resourceType") != "Procedure":
            return
        key = self._key(resource, full_url)
        try:
            self._elsewhere.append(fx.procedure_facts(resource, key, "", whole=False))
        except (TypeError, AttributeError, ValueError, KeyError) as exc:
            raise InvalidResource(key, validation_error(resource) or type(exc).__name__) from exc

    def _take(self, kind: object, resource: dict[str, Any], key: str) -> None:
        if kind == "Procedure" and self._episode.is_report(resource, key):
            return
        if kind == "ChargeItem":
            self._episode.add_charge(resource, key)
        elif kind == "CarePlan":
            self._episode.add_care_plan(resource, key)
        elif kind == "DocumentReference":
            self._episode.is_report(resource, key) or self._episode.is_plan_document(resource, key)
        elif kind == "Provenance":
            self._episode.certifications.add_provenance(resource, key)
        elif kind == "ServiceRequest":
            self._episode.certifications.add_order(resource, key)
        elif kind == "Communication":
            self._episode.certifications.add_communication(resource, key)
        if kind == "Procedure":
            self._procedures.append(
                fx.procedure_facts(resource, key, self.tables.minutes_extension)
            )
        elif kind == "Encounter":
            self._encounters[key] = fx.encounter_facts(
                resource, key, self.tables.total_timed_extension
            )
        elif kind == "Condition":
            self._conditions[key] = fx.codings(resource.get("code"))
        elif kind == "Coverage":
            self._coverages.add_coverage(fx.coverage_facts(resource, key))
        elif kind == "Organization":
            self._coverages.add_organization(key, fx.identifier_pairs(resource.get("identifier")))
        elif kind == "PractitionerRole":
            self._roles.add_role(resource, key)
        elif kind == "Observation" and not self._episode.is_report(resource, key):
            self._add_observation(fx.observation_facts(resource, key))
        elif kind in ("Patient", "Practitioner"):
            self._people.add(kind, resource, key)
            if kind == "Practitioner":
                self._roles.add_practitioner(resource, key)
        elif kind == "Location":
            for system, code, _ in (c for t in resource.get("type") or () for c in fx.codings(t)):
                if system == PLACE_OF_SERVICE and len(code) == 2 and code.isdigit():
                    self._places[key] = code
                    break
        elif kind == "Goal":
            subject = self.norm(fx.reference(resource.get("subject")))
            if resource.get("lifecycleStatus") in ("proposed", "planned", "accepted", "active"):
                addresses = tuple(
                    r for r in (fx.reference(a) for a in resource.get("addresses") or ()) if r
                )
                self._goals.setdefault(subject or "", []).append(GoalFacts(key, addresses))

    def close(self) -> None:
        """Let go of every fact read (a part of a file is decided). The assembler refers to
        itself through its episode reader (`self.norm`), a cycle that only the cyclic garbage
        collector frees — which a batch pauses — so without this each part's facts would stay
        in memory until the run ends. (A compiled assembler has no instance dictionary to
        clear: each container is emptied by name.)"""
        for container in (
            self._aliases, self._encounters, self._procedures, self._conditions,
            self._observations, self._goals,
            self._places, self._invalid, self._history_encounters, self._elsewhere, self._codes,
            self._by_codings,
        ):  # fmt: skip
            container.clear()
        self._coverages, self._people = Coverages(), People()
        self._roles.clear()
        self._days_by_patient = self._by_performer = None
        self._episode = EpisodeFacts(
            self.tables.episode, self.tables.coding_tables.service_types, self.norm
        )

    def performer_index(self) -> PerformerIndex:
        """Every completed one-on-one timed procedure read (as a visit's or as a colleague's),
        by performer: what the one-on-one check looks through."""
        if self._by_performer is None:
            self._by_performer = self._performer_index()
        return self._by_performer

    def own_colleagues(self, owner_of: Callable[[str | None, str | None], str | None]) -> None:
        """Name the patient of each colleague's procedure read without one: `owner_of` its
        encounter and subject as written (known only once a whole file has been read)."""
        for facts in self._elsewhere:
            facts.subject = owner_of(facts.encounter, facts.subject)

    def use_performer_index(self, index: PerformerIndex) -> None:
        """Look through `index` (built over the whole file, `performer_index`) instead of
        the procedures read here."""
        self._by_performer = index

    def key_of(self, resource: dict[str, Any], full_url: str | None) -> str:
        """The key a resource is known by here (`Type/id`, else its fullUrl)."""
        return self._key(resource, full_url)

    def _key(self, resource: dict[str, Any], full_url: str | None) -> str:
        kind, rid = resource.get("resourceType"), resource.get("id")
        if rid:
            return sys.intern(f"{kind}/{rid}")  # the same string as references to it
        return full_url or f"{kind}/#{id(resource)}"

    def history_of(self, patient: str | None) -> History | None:
        """What was read of the patient's episode (None: it could not be read). The dates of
        every patient's finished visits are gathered in one pass, on the first call (after the
        input is read): a file of many visits costs one pass, not one per visit."""
        if not self.history_read:
            return None
        return self._episode.history(
            patient,
            self._patient_days().get(patient, ()),
            lambda functions, actor: self._roles.role(functions, actor).role,
            self.history_unread,
        )

    def _patient_days(self) -> dict[str | None, list[tuple[date, Discipline | None]]]:
        if self._days_by_patient is None:
            found: dict[str | None, list[tuple[date, Discipline | None]]] = {}
            for encounter in (*self._encounters.values(), *self._history_encounters):
                if encounter.status != "finished":
                    continue
                when = first_day(encounter.period_start)
                if when is not None:
                    found.setdefault(self.norm(encounter.subject), []).append(
                        (when, self._service_type(encounter))
                    )
            self._days_by_patient = found
        return self._days_by_patient

    def _add_observation(self, observation: fx.ObservationFacts) -> None:
        if observation.has_value:
            measure = Measure(
                observation.key, observation.name, observation.value_kind, observation.value_text
            )
            for target in observation.part_of:
                self._observations.setdefault(self.norm(target) or target, []).append(measure)

    def norm(self, ref: str | None) -> str | None:
        """A reference as `Type/id`: bundle fullUrls, absolute URLs and _history stripped."""
        return fx.normalize(ref, self._aliases)

    # --- building ---------------------------------------------------------------------------

    def visits(self) -> Iterator[Visit]:
        """One Visit per Encounter, in the order the Encounters arrived. May be called again
        after more history or colleagues were added: the problems are found afresh."""
        self.problems = []
        by_encounter: dict[str, list[fx.ProcedureFacts]] = {}
        for procedure in self._procedures:
            target = self.norm(procedure.encounter)
            if target in self._encounters:
                by_encounter.setdefault(target, []).append(procedure)
            else:
                what = procedure.encounter or "no encounter"
                self.problems.append(
                    self.tables.findings.make(
                        "encounter-missing",
                        f"Procedure belongs to {what}, which is not in the input.",
                        procedure.key,
                        "Procedure.encounter",
                    )
                )
        for key, encounter in self._encounters.items():
            yield self._visit(encounter, by_encounter.get(key, []))

    def _visit(self, encounter: fx.EncounterFacts, procedures: list[fx.ProcedureFacts]) -> Visit:
        found: list[Finding] = self._invalid_findings(encounter.key, "Encounter")
        patient = self.norm(encounter.subject)
        policy = self.tables.findings
        start = _instant(
            encounter.period_start, encounter.key, "Encounter.period.start", found, policy
        )
        end = _instant(encounter.period_end, encounter.key, "Encounter.period.end", found, policy)
        day = _date(encounter.period_start, encounter.key, found, policy)
        service_type = self._service_type(encounter)
        services = self._supervised(
            encounter, tuple(self._service(p, day, service_type) for p in procedures)
        )
        if day is None:
            day = min((s.date for s in services if s.date), default=None)
        if day is None:
            found.append(
                self.tables.findings.make(
                    "date-missing",
                    "The encounter has no date of service.",
                    encounter.key,
                    "Encounter.period.start",
                )
            )
        method, reason, payer, coverage = self._coverages.payer(
            patient, day, encounter.key, found, self.tables.payers, self.tables.findings, self.norm
        )
        person = self._people.patient(patient)
        return Visit(
            encounter=encounter.key,
            patient=patient,
            status=encounter.status,
            date_of_service=day,
            start=start,
            end=end,
            service_provider=self.norm(encounter.service_provider),
            accounts=tuple(a for a in (self.norm(x) for x in encounter.accounts) if a),
            diagnoses=self._diagnoses(encounter, found),
            services=services,
            method=method,
            method_reason=reason,
            payer=payer,
            coverage=coverage,
            goals=tuple(
                GoalFacts(g.reference, tuple(self.norm(a) or a for a in g.addresses))
                for g in self._goals.get(patient or "", ())
            ),
            care_plans=self._episode.plans_of(patient),
            findings=tuple(found),
            documented_timed_minutes=self._documented_total(encounter, found),
            place_of_service=self._place_of_service(encounter),
            history=self.history_of(patient),
            colleagues=self._colleagues(patient, services),
            patient_name=person.name,
            patient_mrn=person.mrn,
            patient_birth_date=person.birth_date,
            identifiers=tuple(Identifier(*i) for i in encounter.identifiers),
            patient_identifiers=person.identifiers,
            patient_family=person.family,
            patient_given=person.given,
            **self._referrer(encounter),
        )

    def _referrer(self, encounter: fx.EncounterFacts) -> dict[str, Any]:
        """The encounter's participant typed REF (v3 ParticipationType referrer: who referred
        the patient or ordered the therapy), with the NPI their Practitioner carries."""
        for reference, types in encounter.participants:
            if any(code == "REF" for _, code, _ in types):
                resolved = self.norm(reference) or reference
                return {
                    "referrer": resolved,
                    "referrer_npi": self._people.practitioner(resolved)[2],
                }
        return {}

    def _supervised(
        self, encounter: fx.EncounterFacts, services: tuple[VisitService, ...]
    ) -> tuple[VisitService, ...]:
        """Each assistant's service with the therapist who supervised it, the first found of:
        a therapist of its discipline on the procedure (minutes together count as the
        therapist's), among the encounter's participants, performing another service of the
        visit; else the assistant's configured supervisor (config/roles.yaml supervisors).

        Source: Pub 100-02 ch.15 §230.1 B, §230.2 B (PTA/OTA services under a therapist's
        supervision); §220.3 E (the treatment note names who furnished or supervised)."""
        if not any(p.role in ASSISTANT_OF for s in services for p in s.performers):
            return services
        participants = [
            (ref, self._roles.role(types, ref).role)
            for ref, types in ((self.norm(r) or r, t) for r, t in encounter.participants)
        ]
        others = [(p.reference, p.role) for s in services for p in s.performers]
        configured = self.tables.coding_tables.supervisors
        out = []
        for service in services:
            assistants = [p for p in service.performers if p.role in ASSISTANT_OF]
            if not assistants:
                out.append(service)
                continue
            wanted = ASSISTANT_OF[assistants[0].role]  # type: ignore[index]
            own = [(p.reference, p.role) for p in service.performers]
            found = next(
                (
                    ref
                    for ref, role in (*own, *participants, *others)
                    if ref and role is not None and THERAPIST_OF.get(role) is wanted
                ),
                None,
            )
            if found is None:
                refs = (a.reference for a in assistants)
                found = next((configured[r] for r in refs if r and r in configured), None)
            out.append(replace(service, supervisor=found) if found else service)
        return tuple(out)

    def _place_of_service(self, encounter: fx.EncounterFacts) -> str:
        """The CMS place of service: the first of the encounter's Locations whose type carries
        one, else the billing provider's (config/roles.yaml place_of_service), else the
        default (11, office)."""
        for ref in encounter.locations:
            code = self._places.get(self.norm(ref) or "")
            if code:
                return code
        tables = self.tables.coding_tables
        provider = self.norm(encounter.service_provider) or ""
        return tables.places_of_service.get(provider, tables.default_place_of_service)

    def _documented_total(self, encounter: fx.EncounterFacts, found: list[Finding]) -> int | None:
        """The visit's documented total timed minutes (Pub 100-02 ch.15 §220.3 E), if sent."""
        value = encounter.total_timed_value
        if value is None:
            return None
        amount = value.get("value") if isinstance(value, dict) else None
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
            found.append(
                self.tables.findings.make(
                    "resource-invalid",
                    "The total timed minutes extension has no non-negative value.",
                    encounter.key,
                    "Encounter.extension(total-timed-minutes)",
                )
            )
            return None
        return int(amount)

    def _colleagues(
        self, patient: str | None, services: tuple[VisitService, ...]
    ) -> tuple[OtherService, ...] | None:
        """The other patients' one-on-one services by this visit's performers that overlap its
        services (None when they were not read). The index by performer is built once."""
        if not self.colleagues_read:
            return None
        by_performer = self.performer_index()
        found: dict[str, OtherService] = {}
        own = {s.reference for s in services}
        periods: dict[str, list[tuple[datetime, datetime]]] = {}
        for service in services:
            if service.start is None or service.end is None:
                continue
            for performer in service.performers:
                if performer.reference in by_performer:
                    periods.setdefault(performer.reference, []).append((service.start, service.end))
        for reference, spans in periods.items():
            union = _union(spans)
            starts = [start for start, _ in union]
            for other in by_performer[reference].overlapping(union[0][0], union[-1][1]):
                # the last stretch of the union starting before `other` ends: the only one
                # that can reach into it (the stretches are disjoint and in order)
                at = bisect_left(starts, other.end) - 1
                if at < 0 or union[at][1] <= other.start:
                    continue
                if other.patient != patient and other.reference not in own:
                    found.setdefault(f"{other.reference}|{other.performer}", other)
        return tuple(found.values())

    def _performer_index(self) -> PerformerIndex:
        """Every completed one-on-one timed procedure read, by performer, in order of start."""
        index: dict[str, list[OtherService]] = {}
        seen: set[str] = set()
        for procedure in (*self._procedures, *self._elsewhere):
            if procedure.key in seen or procedure.status != "completed" or not procedure.performers:
                continue
            seen.add(procedure.key)
            code = self._code_of(procedure)
            if not one_on_one(code, self.tables.catalog):
                continue
            start, end = _period(procedure)
            if start is None or end is None or end <= start:
                continue
            # the visit's patient (a group procedure's subject is the Group)
            encounter = self._encounters.get(self.norm(procedure.encounter) or "")
            patient = self.norm(encounter.subject if encounter else procedure.subject)
            for performer in procedure.performers:
                ref = self.norm(performer.actor)
                if ref:
                    index.setdefault(ref, []).append(
                        OtherService(procedure.key, patient, ref, code or "", start, end)
                    )
        return {ref: _PerformerServices(found) for ref, found in index.items()}

    def _code_of(self, procedure: fx.ProcedureFacts) -> str | None:
        return self._resolution(procedure).code

    def _resolution(self, procedure: fx.ProcedureFacts) -> Resolution:
        """The procedure's billing code and how it was found, resolved once per procedure."""
        found = self._codes.get(procedure.key)
        if found is None:
            # procedures coded alike resolve alike: a file repeats a few codings many times
            found = self._by_codings.get(procedure.codings)
            if found is None:
                pairs = [(s, c) for s, c, _ in procedure.codings]
                found = resolve_code(pairs, self.tables.catalog, self.tables.code_map)
                if len(self._by_codings) < MAX_CODINGS:
                    self._by_codings[procedure.codings] = found
            self._codes[procedure.key] = found
        return found

    def _service(
        self, procedure: fx.ProcedureFacts, day: str | None, service_type: Discipline | None
    ) -> VisitService:
        found: list[Finding] = self._invalid_findings(procedure.key, "Procedure")
        resolution = self._resolution(procedure)
        if procedure.status != "completed":
            found.append(
                self.tables.findings.make(
                    "procedure-not-completed",
                    f"Status {procedure.status or 'none'}: not billed.",
                    procedure.key,
                    "Procedure.status",
                )
            )
        elif resolution.code is None:
            code = "code-conflict" if resolution.how == "conflict" else "code-unmapped"
            found.append(
                self.tables.findings.make(
                    code, resolution.detail.capitalize() + ".", procedure.key, "Procedure.code"
                )
            )
        timing = procedure_timing(procedure, self.tables.findings)
        timed = resolution.code is not None and (
            self.tables.catalog.codes[resolution.code].kind is not CodeKind.UNTIMED
        )
        found.extend(f for f in timing.findings if timed or f.code not in TIME_FINDINGS)
        allowed = self.tables.catalog.codes[resolution.code].disciplines if resolution.code else ()
        # the disciplines the service may be of: what decides between two roles of a performer
        hint = allowed if len(allowed) == 1 else tuple(d for d in allowed if d is service_type)
        performers = tuple(
            self._performer(p, t, procedure.key, found, hint)
            for p, t in zip(procedure.performers, timing.performer_times, strict=True)
        )
        discipline = self._discipline(resolution.code, performers, service_type)
        return VisitService(
            reference=procedure.key,
            status=procedure.status,
            codings=tuple(Coding(s, c, d) for s, c, d in procedure.codings),
            code=resolution.code,
            minutes=timing.minutes,
            minutes_source=timing.source,
            start=timing.start,
            end=timing.end,
            date=timing.start.date().isoformat() if timing.start else day,
            performers=performers,
            discipline=discipline,
            body_sites=tuple(Coding(s, c, d) for s, c, d in procedure.body_sites),
            reasons=tuple(self.norm(r) or r for r in procedure.reasons),
            diagnoses=self._own_diagnoses(procedure),
            notes=procedure.notes,
            measures=tuple(self._observations.get(procedure.key, ())),
            code_text=procedure.code_text,
            based_on=tuple(self.norm(r) or r for r in procedure.based_on),
            findings=tuple(found),
            group_subject=(procedure.subject or "").startswith("Group/"),
        )

    def _own_diagnoses(self, procedure: fx.ProcedureFacts) -> tuple[Diagnosis, ...]:
        """The diagnoses a procedure names itself: its reasonReference Conditions that were
        read, then its reasonCode codings; ICD-10-CM first within each."""
        found = []
        for ref in procedure.reasons:
            key = self.norm(ref)
            codes = self._conditions.get(key or "")
            if codes:
                found.append(self._diagnosis(key, codes))
        found += [self._diagnosis(None, codes) for codes in procedure.reason_codes]
        return tuple(found)

    def _diagnosis(self, reference: str | None, codes: tuple[fx.CodingTuple, ...]) -> Diagnosis:
        """A diagnosis with its ICD-10-CM coding first; one coded only in another system
        (SNOMED CT) gains the ICD-10-CM code an admin mapping table gives it (a ConceptMap
        group whose target is ICD-10-CM), said on the decision's explanation."""
        if any(system == ICD10CM for system, _, _ in codes):
            return Diagnosis(reference, _icd_first(codes))
        mappings = self.tables.code_map.diagnoses
        for system, code, _ in codes:
            mapped = mappings.get((system, code))
            if mapped is not None:
                translated = Coding(ICD10CM, mapped.target, "")
                return Diagnosis(
                    reference, (translated, *_icd_first(codes)), translated_by=mapped.table
                )
        return Diagnosis(reference, _icd_first(codes))

    def _invalid_findings(self, key: str, kind: str) -> list[Finding]:
        message = self._invalid.get(key)
        return (
            [self.tables.findings.make("resource-invalid", message, key, kind)] if message else []
        )

    def _performer(
        self,
        performer: fx.PerformerFacts,
        time: tuple[int | None, Any, Any],
        key: str,
        found: list[Finding],
        disciplines: tuple[Discipline, ...] = (),
    ) -> Performer:
        actor = self.norm(performer.actor)
        role = self._roles.role(performer.functions, actor, disciplines)
        if role.role is None:
            found.append(self._role_problem(role, actor, key))
        minutes, start, end = time
        name, credential, npi = self._people.practitioner(actor)
        return Performer(
            actor, role.role, role.coding, minutes, start, end, name,
            credential or (role.role or ""), npi, role.where,
        )  # fmt: skip

    def _role_problem(self, role: RoleFound, actor: str | None, key: str) -> Finding:
        """No role could be told: ambiguous (two roles, the discipline does not decide), or
        unknown (nowhere the EHR writes one, or a role resource of the wrong shape)."""
        if role.ambiguous:
            return self.tables.findings.make(
                "performer-role-ambiguous", role.problem + ".", key, "Procedure.performer"
            )
        return self.tables.findings.make(
            "performer-role-unknown",
            f"No known role for performer {actor or '(no actor)'}: {role.problem} (read from "
            "performer.function, PractitionerRole.specialty and .code, "
            "Practitioner.qualification and the site's practitioner table).",
            key,
            "Procedure.performer.function",
        )

    def _discipline(
        self, code: str | None, performers: tuple[Performer, ...], service_type: Discipline | None
    ) -> Discipline | None:
        """The plan of care a service counts under, by this rule, first match wins:

        1. a code billed by one discipline only (evaluations: Pub 100-04 ch.5 §20.2 D chart);
        2. the discipline of the first performer with a therapy role (PT/PTA → PT, OT/OTA → OT,
           SLP → SLP), when the code allows it;
        3. the encounter's service type (config/roles.yaml service_types), when the code allows;
        4. the code's first catalog discipline.
        """
        if code is None:
            return None
        allowed = self.tables.catalog.codes[code].disciplines
        if len(allowed) == 1:
            return allowed[0]
        for performer in performers:
            discipline = ROLE_DISCIPLINE.get(performer.role) if performer.role else None
            if discipline in allowed:
                return discipline
        if service_type in allowed:
            return service_type
        return allowed[0]

    def _service_type(self, encounter: fx.EncounterFacts) -> Discipline | None:
        for system, code, _ in encounter.service_types:
            discipline = self.tables.coding_tables.service_types.get((system, code))
            if discipline is not None:
                return discipline
        return None

    def _diagnoses(
        self, encounter: fx.EncounterFacts, found: list[Finding]
    ) -> tuple[Diagnosis, ...]:
        diagnoses = []
        for ref, _ in sorted(encounter.diagnoses, key=lambda d: d[1]):
            key = self.norm(ref)
            codes = self._conditions.get(key or "")
            if codes is None:
                found.append(
                    self.tables.findings.make(
                        "reference-unresolved",
                        f"Diagnosis {ref} is not in the input.",
                        encounter.key,
                        "Encounter.diagnosis.condition",
                    )
                )
                continue
            diagnoses.append(self._diagnosis(key, codes))
        return tuple(diagnoses)


def _icd_first(codes: tuple[fx.CodingTuple, ...]) -> tuple[Coding, ...]:
    ordered = sorted(codes, key=lambda c: c[0] != ICD10CM)  # ICD-10-CM first
    return tuple(Coding(s, c, d) for s, c, d in ordered)


def _period(procedure: fx.ProcedureFacts) -> tuple[datetime | None, datetime | None]:
    """The procedure's performedPeriod as instants (None where missing or unreadable)."""
    try:
        start = parse_instant(procedure.performed_start) if procedure.performed_start else None
        end = parse_instant(procedure.performed_end) if procedure.performed_end else None
    except FhirValueError:
        return None, None
    return start, end


def _instant(
    value: object, key: str, element: str, found: list[Finding], policy: FindingPolicy
) -> Any:
    """A period bound with a time; a date-only bound is valid FHIR and gives no time."""
    if value is None:
        return None
    try:
        if isinstance(value, str) and "T" not in value:
            date_part(value)
            return None
        return parse_instant(value)
    except FhirValueError as exc:
        found.append(policy.make("resource-invalid", str(exc), key, element))
        return None


def _date(value: object, key: str, found: list[Finding], policy: FindingPolicy) -> str | None:
    if value is None:
        return None
    try:
        return date_part(value)
    except FhirValueError as exc:
        found.append(policy.make("resource-invalid", str(exc), key, "Encounter.period.start"))
        return None
