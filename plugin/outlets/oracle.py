"""The Oracle Health (Millennium R4) outlet: charges through the EHR's ChargeItem operations,
which is the only way Millennium takes them (no plain POST or PUT of a ChargeItem). README
"Connecting Oracle Health".

Sources: Oracle Health Millennium Platform APIs, "ChargeItem", "Create a charge item"
(`POST /ChargeItem/$create`), "Create a modified charge item" (`POST /ChargeItem/{id}/$modify`),
"Credit a charge item" (`POST /ChargeItem/{id}/$credit`), and "Proprietary codes and systems"
(the bill-code systems and code set 14002):
- `$create` takes a Parameters of a `transactionId` (a UUID) and one `chargeItem`: status
  `unknown`, subject, context (the Encounter), occurrence, quantity, and `code` with one coding
  of the highest bill-code tier the site uses (CDM_SCHED, then CPT, HCPCS), each coding with
  its `bill-code-schedule` extension; modifiers as repeated `modifier-code` extensions (code,
  priority); diagnoses in `reason` with a `priority` extension (the pointer order); performer
  functions PRF (and VRF), nothing else. Fields it does not support (`identifier`,
  `priceOverride`, `enterer`, `account`, `supportingInformation`, our extensions) fail the
  call: none is sent. It answers 200 with no body and no id: the items it made are found with
  `ChargeItem?context=Encounter/…&-status=billable`, and matched to our lines by what they say.
- `$modify` takes the whole new item with the `replacing` extension naming the old one and its
  `item-version`; `$credit` takes `versionId`, `transactionId`, `subject` and `context`. Both
  answer 201 with the new item's Location. 409: the version we sent is not the current one.

What each line went out as is ours to remember (plugin/store/outlet.py: the item id, version
and what it said), since Millennium keeps none of our identifiers. Every call is recorded with
its `transactionId` before it is sent. Oracle's pages do not say whether a repeated
`transactionId` is recognised, so a call whose answer was lost is never simply sent again: the
next run first looks for what it made (the context search for a `$create`, the item's own
version for `$modify`/`$credit`) and sends it again, with the same `transactionId`, only when
nothing shows it was done.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fhir_mappings.chargeitem import RenderContext
from plugin.gateway.client import FhirClient, iter_resources
from plugin.gateway.errors import FatalFhirError, TemporaryFhirError, VersionConflict
from plugin.jsontypes import Json
from plugin.outlets.base import Delivery, PlanOfLines, day_names, day_of_key
from plugin.rules.decision import Decision
from plugin.rules.lines import ChargeLine, LineStatus
from plugin.rules.systems import HCPCS, ICD10CM
from plugin.schemas.outlet import OracleSite

if TYPE_CHECKING:  # the store brings prometheus_client (see plugin/outlets/hl7v2.py)
    from plugin.store.outlet import OutletStoreMixin

log = logging.getLogger(__name__)

EXTENSIONS = "https://fhir-ehr.cerner.com/r4/StructureDefinition"
SCHEDULE = f"{EXTENSIONS}/bill-code-schedule"
MODIFIER = f"{EXTENSIONS}/modifier-code"
PROCEDURE = f"{EXTENSIONS}/procedure-code"
PRIORITY = f"{EXTENSIONS}/priority"
REPLACING = f"{EXTENSIONS}/replacing"
# ChargeItem.performer.function: Millennium takes OP, PRF and VRF (FHIR R4 performer-function
# value set, v3 ParticipationType)
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


@dataclass
class Call:
    """One operation of a plan: the line, what it sends and to which item."""

    kind: str  # create, modify, credit
    key: str
    day: str
    item: Json | None  # the chargeItem sent (create, modify)
    old: dict[str, Any] | None = None  # {"id", "version", "item"}: what the line went out as
    transaction: str = field(default_factory=lambda: f"urn:uuid:{uuid.uuid4()}")

    def body(self) -> Json:
        if self.kind == "credit":
            assert self.old is not None
            old = self.old["item"]
            return _parameters(
                ("versionId", {"valueString": str(self.old["version"] or "")}),
                ("transactionId", {"valueUuid": self.transaction}),
                ("subject", {"valueReference": old["subject"]}),
                ("context", {"valueReference": old["context"]}),
            )
        assert self.item is not None
        item = dict(self.item)
        if self.kind == "modify":
            assert self.old is not None
            replacing = {
                "url": REPLACING,
                "valueReference": {"reference": f"ChargeItem/{self.old['id']}"},
                "extension": [
                    {"url": "item-version", "valueString": str(self.old["version"] or "")}
                ],
            }
            item["extension"] = [*item.get("extension", []), replacing]
        return _parameters(
            ("transactionId", {"valueUuid": self.transaction}), ("chargeItem", {"resource": item})
        )

    def path(self) -> str:
        if self.kind == "create":
            return "ChargeItem/$create"
        assert self.old is not None
        return f"ChargeItem/{self.old['id']}/${self.kind}"

    def stored(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "day": self.day,
            "credit": self.kind == "credit",
            "content": {"kind": self.kind, "item": self.item, "old": self.old},
        }


@dataclass(kw_only=True)
class OraclePlan(PlanOfLines):
    day: str
    calls: list[Call] = field(default_factory=list)

    @property
    def payload(self) -> Json | None:
        if not self.calls:
            return None
        return {"oracle-health": [{"POST": c.path(), "body": c.body()} for c in self.calls]}


class OracleOutlet:
    name = "oracle-health"

    def __init__(self, site: OracleSite, client: FhirClient, store: OutletStoreMixin) -> None:
        self.site, self.client, self.store = site, client, store

    # --- settle: calls an earlier run sent without an answer ---------------------------------

    def settle(self, decision: Decision) -> None:
        for pending in self.store.pending_messages(self.name, day_names(decision)):
            (posting,) = pending.postings
            call = Call(
                posting["content"]["kind"],
                posting["key"],
                posting["day"],
                posting["content"]["item"],
                posting["content"]["old"],
                pending.control_id,
            )
            done = self._done_already(call)
            if done is not None:
                self._answered(call, True, "found done", done)
                continue
            log.info("sending %s of a line again: its answer never came", call.kind)
            self._call(call)

    # --- plan -----------------------------------------------------------------------------------

    def plan(
        self, decision: Decision, resources: list[Json], ctx: RenderContext, base: str
    ) -> OraclePlan:
        days = day_names(decision)
        sent = self.store.delivered_lines(self.name, days)
        live = {str(r.get("id")): r for r in resources if r.get("resourceType") == "ChargeItem"}
        plan = OraclePlan(day=days[0])
        wanted: dict[str, Json] = {}
        for line in decision.lines:
            if line.status is not LineStatus.BILLABLE or line.units <= 0:
                continue
            item, why = self.charge_item(line, decision)
            if item is None:
                plan.unsendable[line.key] = why
            else:
                wanted[line.key] = item
        for key in sorted(wanted):
            day = day_of_key(key, days)
            old = _current(sent.get(key), live)
            if old is None:
                plan.calls.append(Call("create", key, day, wanted[key]))
                plan.fates.created.append(key)
            elif old["item"] == wanted[key]:
                plan.fates.unchanged.append(key)
            elif old.get("status") == "billed":
                why = f"{key}: ChargeItem/{old['id']} is billed and now differs"
                plan.fates.corrections.append(why)
            else:
                plan.calls.append(Call("modify", key, day, wanted[key], old))
                plan.fates.updated.append(key)
        for key in sorted(set(sent) - set(wanted)):
            old = _current(sent[key], live)
            if old is None:
                continue
            if old.get("status") == "billed":
                plan.fates.corrections.append(
                    f"{key}: ChargeItem/{old['id']} is billed but no longer decided"
                )
                continue
            plan.calls.append(Call("credit", key, day_of_key(key, days), None, old))
            plan.fates.voided.append(key)
        return plan

    def charge_item(self, line: ChargeLine, decision: Decision) -> tuple[Json | None, str]:
        """The chargeItem of a line as Millennium takes it; None and why when the site's
        set-up cannot code it."""
        site = self.site
        kind = "HCPCS" if line.system == HCPCS else "CPT"
        code: Json | None = self._coding(kind, line.code)
        extensions: list[Json] = []
        if site.code == "cdm":  # the charge master code, CPT as the lower-tier procedure code
            keys = [f"{line.code}-{m}" for m in line.modifiers] + [line.code]
            cdm = next((site.cdm[k] for k in keys if k in site.cdm), None)
            if cdm is None:
                return None, f"{line.code} has no charge master code (oracle_health.cdm)"
            extensions.append({"url": PROCEDURE, "valueCodeableConcept": {"coding": [code]}})
            code = self._coding("CDM_SCHED", cdm)
        for priority, modifier in enumerate(line.modifiers, 1):
            extensions.append(
                {
                    "url": MODIFIER,
                    "extension": [
                        {"url": "code", "valueCoding": self._coding("MODIFIER", modifier)},
                        {"url": "priority", "valuePositiveInt": priority},
                    ],
                }
            )
        visit = next((v for v in decision.visits if v.encounter in line.encounters), decision.visit)
        item: Json = {
            "resourceType": "ChargeItem",
            "status": "unknown",
            "code": {"coding": [code]},
            "subject": {"reference": visit.patient or ""},
            "context": {"reference": line.context or visit.encounter},
            "occurrenceDateTime": line.date or visit.date_of_service or "",
            "quantity": {"value": line.units},
            "performer": self._performers(line, visit.referrer),
            "reason": [
                {
                    "coding": [self._coding("ICD", c.code)],
                    "extension": [{"url": PRIORITY, "valuePositiveInt": priority}],
                }
                for priority, c in enumerate(
                    (c for d in line.diagnoses for c in d.codings[:1] if c.system == ICD10CM), 1
                )
            ],
        }
        if extensions:
            item["extension"] = extensions
        return {k: v for k, v in item.items() if v != []}, ""

    def _performers(self, line: ChargeLine, referrer: str | None) -> list[Json]:
        found: list[Json] = []
        seen: set[tuple[str, str]] = set()

        def add(function: str, reference: str) -> None:
            if (function, reference) not in seen:
                seen.add((function, reference))
                coding = {"system": PARTICIPATION, "code": function}
                found.append({"function": {"coding": [coding]}, "actor": {"reference": reference}})

        for service in line.services:
            for performer in service.performers:
                if performer.reference and performer.reference.startswith("Practitioner/"):
                    add("PRF", performer.reference)
        if referrer and referrer.startswith("Practitioner/"):  # who ordered the therapy
            add("OP", referrer)
        if self.site.supervisor == "VRF":  # an assistant's supervising therapist verifies
            for service in line.services:
                if service.supervisor:
                    add("VRF", service.supervisor)
        return found

    def _coding(self, kind: str, code: str) -> Json:
        tenant = self.site.tenant
        return {
            "system": f"https://fhir.cerner.com/{tenant}/CodeSystem/BillCodes-{kind}",
            "code": code,
            "extension": [
                {
                    "url": SCHEDULE,
                    "valueCoding": {
                        "system": f"https://fhir.cerner.com/{tenant}/codeSet/14002",
                        "code": self.site.schedules[kind],
                    },
                }
            ],
        }

    # --- send -----------------------------------------------------------------------------------

    def send(self, plan: OraclePlan, decision: Decision) -> Delivery:
        refused = {k: ("charge-code-unmapped", why) for k, why in plan.unsendable.items()}
        for call in plan.calls:
            self.store.record_message(
                self.name, call.day, call.transaction, _describe(call), [call.stored()]
            )
            try:
                self._call(call)
            except FatalFhirError as exc:
                self._answered(call, False, str(exc))
                if exc.status in (409, 412):  # not the current version: read the day again
                    raise VersionConflict(str(exc), exc.status, exc.url) from exc
                if call.kind != "credit":
                    refused[call.key] = ("billing-system-refused", str(exc))
        return Delivery(
            refused=refused, answer="refused" if len(refused) > len(plan.unsendable) else ""
        )

    def _call(self, call: Call) -> None:
        """Send one operation and record what it made. A temporary failure leaves it pending
        (the run fails; the next run finds out whether it was done before sending it again)."""
        self.store.message_attempted(call.transaction)
        try:
            _, location = self.client.operation(call.path(), call.body())
        except TemporaryFhirError:
            log.warning("the EHR did not answer a ChargeItem %s; it stays pending", call.kind)
            raise
        if call.kind == "credit":
            self._answered(call, True, "credited", None)
            return
        if call.kind == "modify" and location:
            self._answered(call, True, "modified", _from_location(location, call.item))
            return
        made = self._done_already(call)  # $create answers with no id: find what it made
        if made is None:
            raise TemporaryFhirError(
                f"ChargeItem/{call.kind} was taken but its item is not found yet; "
                "it is looked for again on the next run",
                None,
            )
        self._answered(call, True, "created", made)

    def _done_already(self, call: Call) -> dict[str, Any] | None:
        """What a call made, if the EHR shows it: the item it created or modified to (matched
        by what it says, among the encounter's items no other line claims), or, for a credit,
        the old item no longer billable."""
        if call.kind == "credit":
            assert call.old is not None
            try:
                item = self.client.read(f"ChargeItem/{call.old['id']}")
            except FatalFhirError:
                return None
            done = str(item.get("status")) not in ("billable", "unknown", "planned")
            return {"credited": True} if done else None
        assert call.item is not None
        context = call.item["context"]["reference"]
        page = self.client.search(f"ChargeItem?context={quote(context, safe='/')}&-status=billable")
        claimed = {
            str(c.get("id")) for c in self.store.delivered_lines(self.name, (call.day,)).values()
        }
        for item in iter_resources(page.entries):
            if str(item.get("id")) in claimed or item.get("resourceType") != "ChargeItem":
                continue
            if _same(item, call.item):
                version = (item.get("meta") or {}).get("versionId")
                return {"id": str(item["id"]), "version": version, "item": call.item}
        return None

    def _answered(
        self, call: Call, accepted: bool, answer: str, made: dict[str, Any] | None = None
    ) -> None:
        lines = None
        if accepted:
            lines = {call.key: None if call.kind == "credit" else made}
        self.store.message_answered(call.transaction, accepted, answer, lines)


def _current(sent: dict[str, Any] | None, live: dict[str, Json]) -> dict[str, Any] | None:
    """What a line went out as, with the item's current version and status when the day's
    read brought it (a 409 is avoided by sending the version the EHR has)."""
    if sent is None:
        return None
    item = live.get(str(sent.get("id")))
    if item is None:
        return sent
    meta = item.get("meta")
    version = meta.get("versionId") if isinstance(meta, dict) else None
    return {**sent, "version": version or sent.get("version"), "status": item.get("status")}


def _same(found: Json, sent: Json) -> bool:
    """An item the EHR holds says what we sent: code, quantity, date and modifiers."""

    def codes(item: Json) -> tuple[Any, ...]:
        coding = ((item.get("code") or {}).get("coding") or [{}])[0]
        modifiers = sorted(
            str(sub.get("valueCoding", {}).get("code"))
            for ext in item.get("extension") or ()
            if ext.get("url") == MODIFIER
            for sub in ext.get("extension") or ()
            if sub.get("url") == "code"
        )
        quantity = (item.get("quantity") or {}).get("value")
        when = str(item.get("occurrenceDateTime") or "")[:10]
        return coding.get("system"), coding.get("code"), quantity, when, modifiers

    return codes(found) == codes(sent)


def _from_location(location: str, item: Json | None) -> dict[str, Any]:
    """The new item of a 201's Location (…/ChargeItem/{id}[/_history/{version}])."""
    parts = location.rstrip("/").split("/")
    index = parts.index("ChargeItem") if "ChargeItem" in parts else len(parts) - 2
    version = (
        parts[index + 3] if len(parts) > index + 3 and parts[index + 2] == "_history" else None
    )
    return {"id": parts[index + 1], "version": version, "item": item}


def _parameters(*parameters: tuple[str, Json]) -> Json:
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": name, **value} for name, value in parameters],
    }


def _describe(call: Call) -> str:
    """The call as recorded (no patient data: the operation and the item it concerns)."""
    target = f" of ChargeItem/{call.old['id']}" if call.old else ""
    return f"POST {call.path()}{target}"
