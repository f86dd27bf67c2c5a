"""When a plan of care was certified, read where EHRs record it (Pub 100-02 ch.15 §220.1.3: the
physician's or NPP's dated signature on the plan, or a verbal order noted and signed).

No implementation guide models certification. The routes, tried in the site's order
(config/rules/episode.yaml `certification_routes`), first found:
- `document`: a DocumentReference of the plan (type one of `plan_document_codes`; LOINC
  18776-5 "Plan of care note" shipped), `current`, linked to the CarePlan
  (`context.related`) or, linked to none, dated within the plan's period; its `authenticator`
  — or the `who` of a Provenance signature on it — a physician/NPP (role `physician`); dated by
  that signature's `when`, else the document's `date`;
- `provenance`: a Provenance targeting the CarePlan whose signature (`signature.when`, its
  `who`) or agent is a physician/NPP;
- `order`: from 2025, a signed, dated order or referral for the therapy (a ServiceRequest,
  `active` or `completed`, its `requester` a physician/NPP, `authoredOn` on or before the plan's
  first day) and the plan sent to that practitioner (a `completed` Communication `about` the
  CarePlan or its plan document, its `recipient` the requester); dated by when it was sent
  (CY 2025 Physician Fee Schedule final rule: the signed order plus the plan of care sent to
  the ordering practitioner within 30 days stands for the certification);
- `extension`: the site's extension on the CarePlan (`certification_extension`, valueDate or
  valueDateTime).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from typing import Any, NamedTuple

from fhir_mappings import facts as fx
from fhir_mappings.fhirtime import first_day
from plugin.rules.model import Role

ROUTES = ("document", "provenance", "order", "extension")


class PlanDocument(NamedTuple):
    key: str
    status: str
    authenticator: str | None
    written: date | None
    plans: tuple[str, ...]


class Signature(NamedTuple):
    """A Provenance's signature (or agent) on a target: who, and when."""

    who: str
    when: date | None


class Order(NamedTuple):
    key: str
    requester: str
    signed: date


class Sent(NamedTuple):
    key: str
    when: date
    about: tuple[str, ...]
    recipients: tuple[str, ...]


class Certified(NamedTuple):
    on: date
    how: str  # the route and the resource, for the explanation


class Certifications:
    """The plan documents and Provenance signatures read, per target."""

    def __init__(self, norm: Callable[[str | None], str | None]) -> None:
        self.norm = norm
        self.documents: dict[str, list[PlanDocument]] = {}  # subject → plan documents
        self.signatures: dict[str, list[Signature]] = {}  # target → signatures
        # what could not be read, by the plan or patient it concerns: "Provenance/x.signature
        # is not a list" — said on the plan's finding rather than taken as "not signed"
        self.malformed: dict[str, list[str]] = {}
        self.orders: dict[str, list[Order]] = {}  # subject → signed orders for therapy
        self.sent: list[Sent] = []  # what was sent to whom (Communication)

    def add_order(self, resource: dict[str, Any], key: str) -> None:
        """A ServiceRequest (the order or referral for therapy): who signed it, and when."""
        if resource.get("status") not in ("active", "completed"):
            return
        subject = self.norm(fx.reference(resource.get("subject")))
        requester = self.norm(fx.reference(resource.get("requester")))
        signed = first_day(resource.get("authoredOn"))
        if subject and requester and signed:
            self.orders.setdefault(subject, []).append(Order(key, requester, signed))

    def add_communication(self, resource: dict[str, Any], key: str) -> None:
        """A Communication that sent something (the plan of care) to a practitioner."""
        if resource.get("status") != "completed":
            return
        sent = first_day(resource.get("sent"))
        about = fx.references(resource.get("about"), self.norm)
        recipients = fx.references(resource.get("recipient"), self.norm)
        if sent and about and recipients:
            self.sent.append(Sent(key, sent, about, recipients))

    def add_document(self, resource: dict[str, Any], key: str) -> None:
        subject = self.norm(fx.reference(resource.get("subject")))
        context = resource.get("context")
        related = context.get("related") if isinstance(context, dict) else None
        for element, value, shape in (
            ("authenticator", resource.get("authenticator"), dict),
            ("context.related", related, list),
            ("date", resource.get("date"), str),
        ):
            if value is not None and not isinstance(value, shape):
                what = {dict: "a Reference", list: "a list", str: "an instant"}[shape]
                self.malformed.setdefault(subject or "", []).append(
                    f"{key}.{element} is not {what}"
                )
        document = PlanDocument(
            key,
            str(resource.get("status") or ""),
            self.norm(fx.reference(resource.get("authenticator"))),
            first_day(resource.get("date")),
            fx.references(related, self.norm),
        )
        self.documents.setdefault(subject or "", []).append(document)

    def add_provenance(self, resource: dict[str, Any], key: str) -> None:
        raw = resource.get("target")
        targets = (
            [self.norm(fx.reference(t)) for t in raw if isinstance(t, dict)]
            if isinstance(raw, list)
            else []
        )
        for element in ("signature", "agent"):
            value = resource.get(element)
            if value is not None and not (
                isinstance(value, list) and all(isinstance(v, dict) for v in value)
            ):
                for target in targets or [""]:
                    self.malformed.setdefault(target or "", []).append(
                        f"{key}.{element} is not a list of objects"
                    )
        found: list[Signature] = []
        for signature in resource.get("signature") or ():
            if isinstance(signature, dict):
                who = self.norm(fx.reference(signature.get("who")))
                if who:
                    found.append(Signature(who, first_day(signature.get("when"))))
        recorded = first_day(resource.get("recorded"))
        for agent in resource.get("agent") or ():
            if isinstance(agent, dict):
                who = self.norm(fx.reference(agent.get("who")))
                if who:
                    found.append(Signature(who, recorded))
        for target in targets:
            if target:
                self.signatures.setdefault(target, []).extend(found)

    def certified(
        self,
        plan: str,
        subject: str | None,
        period: tuple[date | None, date | None],
        extension: date | None,
        routes: Iterable[str],
        certifies: Callable[[str], bool],
    ) -> Certified | None:
        """The first route that finds the plan certified (module docstring); None if none."""
        for route in routes:
            found: Certified | None = None
            if route == "document":
                found = self._by_document(plan, subject, period, certifies)
            elif route == "provenance":
                signed = self._signed(plan, certifies)
                if signed is not None:
                    found = Certified(signed[0], f"signed on a Provenance by {signed[1]}")
            elif route == "order":
                found = self._by_order(plan, subject, period[0], certifies)
            elif route == "extension" and extension is not None:
                found = Certified(extension, "the certification extension on the CarePlan")
            if found is not None:
                return found
        return None

    def _by_order(
        self, plan: str, subject: str | None, start: date | None, certifies: Callable[[str], bool]
    ) -> Certified | None:
        """A signed order before the plan, and the plan sent to whoever signed it."""
        documents = {d.key for d in self.documents.get(subject or "", ()) if plan in d.plans}
        best: Certified | None = None
        for order in self.orders.get(subject or "", ()):
            if not certifies(order.requester) or (start is not None and order.signed > start):
                continue
            for sent in self.sent:
                if order.requester not in sent.recipients:
                    continue
                if plan not in sent.about and not documents.intersection(sent.about):
                    continue
                found = Certified(
                    sent.when,
                    f"{order.key} signed by {order.requester} on {order.signed.isoformat()}, "
                    f"the plan sent to them by {sent.key}",
                )
                if best is None or found.on < best.on:
                    best = found
        return best

    def unreadable(self, plan: str, subject: str | None) -> list[str]:
        """The certification resources of the plan (or its patient's plan documents) that
        could not be read."""
        return [*self.malformed.get(plan, ()), *self.malformed.get(subject or "", ())]

    def _signed(self, target: str, certifies: Callable[[str], bool]) -> tuple[date, str] | None:
        dated = sorted(
            (s.when, s.who) for s in self.signatures.get(target, ()) if s.when and certifies(s.who)
        )
        return dated[0] if dated else None

    def _by_document(
        self,
        plan: str,
        subject: str | None,
        period: tuple[date | None, date | None],
        certifies: Callable[[str], bool],
    ) -> Certified | None:
        start, end = period
        best: Certified | None = None
        for document in self.documents.get(subject or "", ()):
            if document.status != "current":
                continue
            if document.plans and plan not in document.plans:
                continue
            signed = self._signed(document.key, certifies)
            when: date | None = None
            who = ""
            if signed is not None:
                when, who = signed
            elif document.authenticator and certifies(document.authenticator):
                when, who = document.written, document.authenticator
            if when is None:
                continue
            if not document.plans and (
                start is None or when < start or (end is not None and when > end)
            ):
                continue
            found = Certified(when, f"{document.key}, authenticated by {who}")
            if best is None or found.on < best.on:
                best = found
        return best


def certifier(role_of: Callable[[str], Role | None]) -> Callable[[str], bool]:
    """Who may certify a plan of care: a physician or NPP (Pub 100-02 ch.15 §220.1.3)."""
    return lambda who: role_of(who) is Role.PHYSICIAN
