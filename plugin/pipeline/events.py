"""HL7 v2 events from the site's interface engine, as triggers: a visit ended (ADT^A03), a note
signed (MDM^T02, or MDM^T04 with the document authenticated). No standard CDS hook fires when
an outpatient note is signed, so sites feed these from their engine (README "Events in over
HL7 v2").

Each event names its visit by PV1-19 (the visit number), which is looked up among the EHR's
Encounters by the site's visit identifier system (the outlet table's
`hl7v2.visit_identifier_system`; unset: any system). The encounter's billing day is recorded
as a notification — durably, before the engine gets its AA — and run like a Subscription's
(repeats harmless: a repeated control id is recorded once). The answer otherwise:
- AR (rejected: sending it again will not help): a message that is not HL7 v2, an event the
  site did not configure (THERACHARGE_HL7_EVENTS), no visit number, no encounter or two with it;
- AE (error: the engine may send it again): the EHR or our database could not be reached.
Messages carry PHI: never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote

import hl7

from plugin.gateway.client import iter_resources
from plugin.gateway.errors import FhirError
from plugin.outlets.dft import escape
from plugin.pipeline.runtime import Runtime
from plugin.pipeline.service import day_of

log = logging.getLogger(__name__)

DEFAULT_EVENTS = ("ADT^A03", "MDM^T02", "MDM^T04")
# TXA-17 document completion status (HL7 table 0271): AU authenticated, LA legally authenticated
SIGNED = ("AU", "LA")


class EventIntake:
    """The listener's handler: an event's text in, its ACK's text out."""

    def __init__(
        self,
        runtime: Runtime,
        events: tuple[str, ...] = DEFAULT_EVENTS,
        send: Callable[[str, int], object] | None = None,
    ) -> None:
        self.runtime, self.events, self.send = runtime, events, send

    def __call__(self, text: str) -> str:
        try:
            message = hl7.parse(text.replace("\r\n", "\r").replace("\n", "\r"))
            msh = message.segment("MSH")
        except Exception:  # noqa: BLE001 -- any unreadable message is answered AR, not a crash
            return ack(None, "AR", "not an HL7 v2 message with an MSH segment")
        code, why = self._take(message, msh)
        return ack(msh, code, why)

    def _take(self, message: hl7.Message, msh: hl7.Segment) -> tuple[str, str]:
        kind = f"{_part(msh, 9, 0)}^{_part(msh, 9, 1)}"
        if kind not in self.events:
            return "AR", f"{kind} is not an event TheraCharge takes (THERACHARGE_HL7_EVENTS)"
        if kind.startswith("MDM"):
            status = _part(_segment(message, "TXA"), 17, 0)
            if status and status not in SIGNED:
                return "AA", f"the document is not signed yet (TXA-17 {status}): nothing to do"
        visit = _part(_segment(message, "PV1"), 19, 0)
        if not visit:
            return "AR", "PV1-19 (the visit number) is empty"
        gatherer = self.runtime.gatherer()
        if gatherer is None:
            return "AE", "no EHR configured (THERACHARGE_FHIR_BASE_URL)"
        settings = self.runtime.current()
        system = settings.outlet_site.hl7v2.visit_identifier_system
        token = f"{system}|{visit}" if system else visit
        try:
            page = gatherer.client.search(f"Encounter?identifier={quote(token, safe='')}&_count=2")
        except FhirError as exc:
            return "AE", f"the EHR could not be asked for the visit: {exc}"
        found = [r for r in iter_resources(page.entries) if r.get("resourceType") == "Encounter"]
        if not found:
            return "AR", f"no Encounter has the visit number {visit}"
        if len(found) > 1:
            return "AR", f"more than one Encounter has the visit number {visit}"
        encounter = found[0]
        control = _part(msh, 10, 0) or "none"
        try:
            row = self.runtime.store.enqueue(
                str(encounter.get("id")), f"hl7:{control}"[:64], day_of(encounter)
            )
        except Exception as exc:  # noqa: BLE001 -- the engine sends it again later
            log.warning("recording an HL7 event failed: %s", type(exc).__name__)
            return "AE", "the event could not be recorded; send it again"
        if row is None:
            return "AA", "recorded before (the same control id)"
        if self.send is not None:
            self.send("notification", row)
        return "AA", f"Encounter/{encounter.get('id')} queued"


def ack(msh: hl7.Segment | None, code: str, text: str) -> str:
    """The ACK of a message (its applications and facilities swapped, MSA-2 its control id);
    ERR with the words when it is not accepted (HL7 v2.5.1 Ch. 2 MSA, ERR)."""
    sender = [_part(msh, i, 0) for i in (3, 4, 5, 6)] if msh is not None else ["", "", "", ""]
    control = _part(msh, 10, 0) if msh is not None else ""
    trigger = _part(msh, 9, 1) if msh is not None else ""
    version = (_part(msh, 12, 0) if msh is not None else "") or "2.5.1"
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    swapped = [escape(v) for v in (sender[2], sender[3], sender[0], sender[1])]
    answer = ["", f"ACK^{escape(trigger)}", f"A{escape(control)}"[:20], "P", escape(version)]
    header = "|".join(["MSH", "^~\\&", *swapped, now, *answer])
    segments = [header, f"MSA|{code}|{escape(control)}|{escape(text)}"]
    if code != "AA":
        segments.append(f"ERR||||E||||{escape(text)}")
    return "\r".join(segments)


def _segment(message: hl7.Message, name: str) -> hl7.Segment | None:
    try:
        return message.segment(name)
    except KeyError:
        return None


def _part(segment: hl7.Segment | None, field: int, component: int) -> str:
    """A field's component as text ("" when absent), python-hl7's MSH numbering included."""
    if segment is None:
        return ""
    try:
        return str(segment.extract_field(1, field, 1, component + 1)).strip()
    except (IndexError, KeyError, ValueError):
        return ""
