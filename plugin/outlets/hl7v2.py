"""The HL7 v2 outlet: the day's charges as a DFT^P03 message over MLLP to the billing system
(Epic's "Incoming Financial Transactions" interface, a practice-management system, usually
through the site's interface engine). README "Connecting Epic or a billing system over HL7 v2".

The billing system keeps no copy we can read, so what it accepted is ours to remember
(plugin/store/outlet.py): each line as last accepted. A run compares the day's billable lines
with it: a new line is a charge, a changed line the credit of the old plus the new charge (in
the same message), a line no longer billable a credit, an unchanged line nothing — a rerun
sends nothing. The message is recorded before it is sent and settled by its ACK:
- AA (CA): accepted; the lines are stored as sent.
- AE/AR (CE/CR): refused; nothing is stored, and the charges it carried are held on the
  worklist with the receiver's words (MSA-3, ERR) — never dropped, never sent again unchanged
  by this run.
- no ACK within THERACHARGE_HL7_ACK_TIMEOUT_SECONDS, or the connection dropped: sent again on a
  new connection with the same control id (MSH-10; the receiver recognises the repeat), up to
  THERACHARGE_HL7_ATTEMPTS times; then the run fails and its trigger retries it later (then a
  dead letter). A message still pending is sent again, with its control id, before anything
  else of its day — after a lost ACK or a restart mid-batch.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import hl7

from fhir_mappings.chargeitem import RenderContext
from plugin.gateway.mllp import MllpSender, NoAck
from plugin.jsontypes import Json
from plugin.outlets.base import Delivery, PlanOfLines, day_names, day_of_key
from plugin.outlets.dft import Posting, line_content, message
from plugin.rules.decision import Decision
from plugin.rules.lines import LineStatus
from plugin.schemas.outlet import Hl7Site

if TYPE_CHECKING:  # the store brings prometheus_client, which must not load before `serve`
    # sets PROMETHEUS_MULTIPROC_DIR (plugin/commands/main.py); run_day imports this module
    from plugin.store.outlet import OutletStoreMixin

log = logging.getLogger(__name__)

ACCEPTED = ("AA", "CA")
REFUSED = ("AE", "AR", "CE", "CR")


@dataclass(kw_only=True)
class Hl7Plan(PlanOfLines):
    """The day's message (None: nothing to send) and each line's fate."""

    day: str
    control_id: str
    postings: list[Posting] = field(default_factory=list)
    text: str | None = None

    @property
    def payload(self) -> Json | None:
        if self.text is None:
            return None
        return {"hl7v2": {"control_id": self.control_id, "message": self.text.split("\r")}}


@dataclass(frozen=True)
class Ack:
    code: str  # MSA-1
    control_id: str  # MSA-2
    text: str  # MSA-3 and the ERR segments' words


class Hl7Outlet:
    name = "hl7v2"

    def __init__(
        self, site: Hl7Site, store: OutletStoreMixin, sender: MllpSender, attempts: int = 3
    ) -> None:
        self.site, self.store, self.sender, self.attempts = site, store, sender, attempts

    def settle(self, decision: Decision) -> None:
        """Messages of the day still pending (an ACK lost, a stop mid-run): sent again with
        their control ids before anything new is planned."""
        for pending in self.store.pending_messages(self.name, day_names(decision)):
            log.info("sending message %s again: its ACK never came", pending.control_id)
            self._deliver(pending.control_id, pending.body)

    def plan(
        self, decision: Decision, resources: list[Json], ctx: RenderContext, base: str
    ) -> Hl7Plan:
        days = day_names(decision)
        accepted = self.store.delivered_lines(self.name, days)
        plan = Hl7Plan(day=days[0], control_id=_control_id())
        wanted: dict[str, dict[str, Any]] = {}
        for line in decision.lines:
            if line.status is not LineStatus.BILLABLE or line.units <= 0:
                continue
            content = line_content(line, decision, self.site)
            if not content["charge_code"]:
                plan.unsendable[line.key] = (
                    f"{line.code} has no charge master code in the outlet table (hl7v2.cdm)"
                )
                continue
            wanted[line.key] = content
        for key in sorted(wanted):
            day = day_of_key(key, days)
            old = accepted.get(key)
            if old is None:
                plan.postings.append(Posting(key, day, False, wanted[key]))
                plan.fates.created.append(key)
            elif old == wanted[key]:
                plan.fates.unchanged.append(key)
            else:  # the receiver replaces a charge by its credit and a new charge
                plan.postings += [
                    Posting(key, day, True, old),
                    Posting(key, day, False, wanted[key]),
                ]
                plan.fates.updated.append(key)
        for key in sorted(set(accepted) - set(wanted)):
            plan.postings.append(Posting(key, day_of_key(key, days), True, accepted[key]))
            plan.fates.voided.append(key)
        if plan.postings:
            plan.text = message(self.site, decision, plan.postings, plan.control_id, ctx.entered)
        return plan

    def send(self, plan: Hl7Plan, decision: Decision) -> Delivery:
        """Record the message, send it, settle it by its ACK."""
        unmapped = {key: ("charge-code-unmapped", why) for key, why in plan.unsendable.items()}
        if plan.text is None:
            return Delivery(refused=unmapped)
        self.store.record_message(
            self.name, plan.day, plan.control_id, plan.text, [p.stored() for p in plan.postings]
        )
        ack = self._deliver(plan.control_id, plan.text)
        if ack.code not in REFUSED:
            return Delivery(refused=unmapped)
        words = f"{ack.code}: {ack.text}" if ack.text else ack.code
        refused = {p.key: ("billing-system-refused", words) for p in plan.postings if not p.credit}
        return Delivery(refused={**unmapped, **refused}, answer=ack.code)

    def _deliver(self, control_id: str, text: str) -> Ack:
        """Send until an ACK of this control id comes, at most `attempts` times; the message
        settled in the store by it. NoAck when none came (the message stays pending)."""
        last: Exception | None = None
        for _ in range(self.attempts):
            self.store.message_attempted(control_id)
            try:
                ack = parse_ack(self.sender.send(text))
            except NoAck as exc:
                last = exc
                continue
            if ack.control_id != control_id:  # an answer to something else: not ours
                log.warning("an ACK for another control id came; sending again")
                self.sender.close()
                last = NoAck(f"the billing system answered another message ({ack.code})")
                continue
            if ack.code in ACCEPTED or ack.code in REFUSED:
                self.store.message_answered(control_id, ack.code in ACCEPTED, ack.text)
                return ack
            last = NoAck(f"the billing system's ACK has no known code ({ack.code[:8]!r})")
        raise NoAck(
            f"message {control_id}: no ACK from the billing system after {self.attempts} "
            f"attempt(s); it is sent again with the same control id on the next run ({last})"
        )


def parse_ack(text: str) -> Ack:
    """MSA-1 (the code), MSA-2 (the control id it answers), MSA-3 and ERR's words (python-hl7);
    an answer that is no ACK is NoAck."""
    try:
        parsed = hl7.parse(text.replace("\n", "\r"))
        msa = parsed.segment("MSA")
    except (KeyError, IndexError, ValueError, hl7.ParseException) as exc:
        raise NoAck(f"the billing system's answer is no HL7 ACK ({type(exc).__name__})") from exc
    words = [str(msa[3])] if len(msa) > 3 and str(msa[3]) else []
    for segment in parsed:
        if str(segment[0]) == "ERR":
            # ERR-8 user message (2.5), else ERR-3's text / ERR-1 (2.3: code and location)
            for index in (8, 3, 1):
                if len(segment) > index and str(segment[index]):
                    words.append(str(segment[index]).replace("^", " ").strip())
                    break
    return Ack(str(msa[1]), str(msa[2]) if len(msa) > 2 else "", "; ".join(words)[:2000])


def _control_id() -> str:
    """A message control id (MSH-10, at most 20 characters): unique per message."""
    return "TC" + uuid.uuid4().hex[:18].upper()
