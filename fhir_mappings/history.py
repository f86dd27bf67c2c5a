"""The patient's episode of care as read: progress reports, charges of the year and care plans
(plugin.rules.episode reads them as a `History`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from fhir_mappings import facts as fx
from fhir_mappings.certification import Certifications, certifier
from fhir_mappings.fhirtime import first_day
from plugin.rules.episode import MODIFIER_DISCIPLINE, EpisodeRules
from plugin.rules.history import CarePlanFacts, History, PriorCharge, ReportFacts
from plugin.rules.model import Discipline, Role

# Who wrote a report as read: (the actor's reference, the codings of its performer.function)
Writer = tuple[str, tuple[fx.CodingTuple, ...]]
RoleOf = Callable[[tuple[fx.CodingTuple, ...], str | None], Role | None]


def _number(element: object) -> float | None:
    """The finite number of a Quantity or Money element's `value` (None for anything else: a
    boolean, a string, infinity)."""
    value = element.get("value") if isinstance(element, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class EpisodeFacts:
    """Collects, per patient, what the episode rules read."""

    def __init__(
        self,
        rules: EpisodeRules | None,
        service_types: Mapping[tuple[str, str], Discipline],
        norm: Callable[[str | None], str | None],
    ) -> None:
        self.rules = rules
        self.service_types = service_types
        self.norm = norm
        self.charges: dict[str, list[PriorCharge]] = {}
        self.care_plans: dict[str, list[CarePlanFacts]] = {}
        # per patient: (key, written, authors, co-signers, linked plans), roles read later
        self.reports: dict[str, list[tuple[str, date, list[Writer], list[Writer], tuple[str, ...]]]]
        self.reports = {}
        self.certifications = Certifications(norm)  # signed plan documents, signatures

    def is_plan_document(self, resource: dict[str, Any], key: str) -> bool:
        """A signed plan of care (a DocumentReference of a `plan_document_codes` type):
        recorded for the certification of the patient's CarePlans."""
        rules = self.rules
        if rules is None or not rules.plan_document_codes:
            return False
        if not any(
            (s, c) in rules.plan_document_codes for s, c, _ in fx.codings(resource.get("type"))
        ):
            return False
        self.certifications.add_document(resource, key)
        return True

    def is_report(self, resource: dict[str, Any], key: str) -> bool:
        """A progress report (config/rules/episode.yaml codes): recorded with its date; a
        Procedure that is one is not a billed service."""
        rules = self.rules
        if rules is None or not rules.report_codes:
            return False
        concepts = (
            resource.get("type")
            if resource.get("resourceType") == "DocumentReference"
            else resource.get("code")
        )
        if not any((s, c) in rules.report_codes for s, c, _ in fx.codings(concepts)):
            return False
        when = first_day(
            resource.get("performedDateTime"),
            (resource.get("performedPeriod") or {}).get("start"),
            resource.get("effectiveDateTime"),
            (resource.get("effectivePeriod") or {}).get("start"),
            resource.get("issued"),
            resource.get("date"),
        )
        subject = self.norm(fx.reference(resource.get("subject")))
        if when is not None and subject:
            authors, cosigners, plans = self._writers(resource)
            self.reports.setdefault(subject, []).append((key, when, authors, cosigners, plans))
        return True

    def _writers(
        self, resource: dict[str, Any]
    ) -> tuple[list[Writer], list[Writer], tuple[str, ...]]:
        """Who wrote a report, who signed it off, and the plans it is linked to: a Procedure's
        performers (actor and function) and basedOn; an Observation's performers and basedOn;
        a DocumentReference's authors, its authenticator and context.related."""
        kind = resource.get("resourceType")
        authors: list[Writer] = []
        cosigners: list[Writer] = []
        if kind == "Procedure":
            for performer in resource.get("performer") or ():
                if isinstance(performer, dict):
                    actor = self.norm(fx.reference(performer.get("actor")))
                    if actor:
                        authors.append((actor, fx.codings(performer.get("function"))))
            linked = resource.get("basedOn")
        elif kind == "Observation":
            authors += [(r, ()) for r in fx.references(resource.get("performer"), self.norm)]
            linked = resource.get("basedOn")
        else:
            authors += [(r, ()) for r in fx.references(resource.get("author"), self.norm)]
            signer = self.norm(fx.reference(resource.get("authenticator")))
            if signer:
                cosigners.append((signer, ()))
            context = resource.get("context")
            linked = context.get("related") if isinstance(context, dict) else None
        plans = tuple(r for r in fx.references(linked, self.norm) if r.startswith("CarePlan/"))
        return authors, cosigners, plans

    def add_charge(self, resource: dict[str, Any], key: str) -> None:
        """A charge of the patient, for the year's KX estimate: billable or billed, with a date
        and a plan-of-care modifier (GP/GO/GN) naming its discipline."""
        if resource.get("status") not in ("billable", "billed"):
            return
        subject = self.norm(fx.reference(resource.get("subject")))
        period = resource.get("occurrencePeriod")
        when = first_day(
            resource.get("occurrenceDateTime"),
            period.get("start") if isinstance(period, dict) else None,
        )
        codes = fx.codings(resource.get("code"))
        if not subject or when is None or not codes:
            return
        discipline = None
        for ext in resource.get("extension") or ():
            if isinstance(ext, dict):
                for _, code, _ in fx.codings(ext.get("valueCodeableConcept")):
                    discipline = discipline or MODIFIER_DISCIPLINE.get(code)
        if discipline is None:
            return
        quantity = _number(resource.get("quantity"))
        price = _number(resource.get("priceOverride"))
        self.charges.setdefault(subject, []).append(
            PriorCharge(
                key,
                when,
                discipline,
                codes[0][1],
                int(quantity) if quantity is not None else 1,
                Decimal(str(price)) if price is not None else None,
            )
        )

    def add_care_plan(self, resource: dict[str, Any], key: str) -> None:
        if resource.get("status") not in ("active", "completed"):
            return
        subject = self.norm(fx.reference(resource.get("subject")))
        period = resource.get("period")
        period = period if isinstance(period, dict) else {}
        certified = delay_reason = None
        rules = self.rules
        for ext in resource.get("extension") or ():
            if not isinstance(ext, dict) or not rules:
                continue
            if ext.get("url") == rules.certification_extension:
                certified = first_day(ext.get("valueDate"), ext.get("valueDateTime"))
            elif rules.delay_reason_extension and ext.get("url") == rules.delay_reason_extension:
                text = ext.get("valueString")
                delay_reason = text.strip() or None if isinstance(text, str) else None
        disciplines = tuple(
            dict.fromkeys(
                d
                for concept in resource.get("category") or ()
                for s, c, _ in fx.codings(concept)
                if (d := self.service_types.get((s, c))) is not None
            )
        )
        if subject:
            self.care_plans.setdefault(subject, []).append(
                CarePlanFacts(
                    key,
                    first_day(period.get("start")),
                    first_day(period.get("end")),
                    certified,
                    disciplines,
                    fx.references(resource.get("addresses"), self.norm),
                    fx.references(resource.get("goal"), self.norm),
                    resource.get("status") == "active",
                    delay_reason,
                )
            )

    def plans_of(self, patient: str | None) -> tuple[CarePlanFacts, ...]:
        """The patient's plans of care read (active or completed)."""
        return tuple(self.care_plans.get(patient or "", ()))

    def history(
        self,
        patient: str | None,
        days: Iterable[tuple[date, Discipline | None]],
        role_of: RoleOf,
        unread: tuple[str, ...] = (),
    ) -> History:
        """The patient's history, with the dates of their finished visits (`days`), the roles of
        the reports' writers (`role_of`, once every PractitionerRole is read) and the resource
        types the EHR would not let us search (`unread`)."""
        key = patient or ""
        certifies = certifier(lambda who: role_of((), who))
        routes = self.rules.certification_routes if self.rules else ("extension",)
        plans = tuple(
            plan._replace(certified=found.on, certified_by=found.how)
            if (
                found := self.certifications.certified(
                    plan.reference, key, (plan.start, plan.end), plan.certified, routes, certifies
                )
            )
            else plan._replace(
                certified=None,
                certified_by="; ".join(self.certifications.unreadable(plan.reference, key)),
            )
            for plan in self.care_plans.get(key, ())
        )
        reports = tuple(
            ReportFacts(
                ref,
                when,
                tuple((actor, role_of(functions, actor)) for actor, functions in authors),
                tuple((actor, role_of(functions, actor)) for actor, functions in cosigners)
                # a Provenance signature on the report signs it off as well
                + tuple(
                    (signed.who, role_of((), signed.who))
                    for signed in self.certifications.signatures.get(ref, ())
                ),
                plans,
            )
            for ref, when, authors, cosigners, plans in self.reports.get(key, ())
        )
        return History(
            tuple(self.charges.get(key, ())),
            plans,
            tuple(dict.fromkeys(days)),
            reports,
            unread,
        )
