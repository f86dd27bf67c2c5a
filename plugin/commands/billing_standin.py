"""The demo's billing system for `theracharge demo --outlet hl7v2`: an MLLP listener on
127.0.0.1 (plugin/gateway/mllp.MllpListener) that posts each DFT^P03's FT1 segments and answers
AA, as a billing system's HL7 v2 charge interface would, recognising a control id it has
posted already. What it got is what the demo reports: messages per patient, lines, ACKs."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import hl7

from plugin.gateway.mllp import MllpListener
from plugin.pipeline.events import ack


@dataclass
class BillingStandIn:
    listener: MllpListener | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)  # one per control id posted
    repeats: int = 0  # messages sent again with a control id already posted
    acks: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> int:
        """Listening on a free port of 127.0.0.1; the port."""
        self.listener = MllpListener("127.0.0.1", 0, self.take)
        self.listener.start()
        return self.listener.port

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.stop()

    def take(self, text: str) -> str:
        try:
            message = hl7.parse(text)
            msh = message.segment("MSH")
        except Exception:  # noqa: BLE001 -- answered, as a receiver would
            self.acks["AR"] += 1
            return ack(None, "AR", "not an HL7 v2 message")
        control = str(msh[10])
        lines = [
            {
                "key": str(s[2]),
                "type": str(s[6]),
                "code": str(s[7][0][0]) if len(s) > 7 else "",
                "units": int(str(s[10]) or 0),
                "modifiers": str(s[26]).split("~") if len(s) > 26 and str(s[26]) else [],
            }
            for s in message
            if str(s[0]) == "FT1"
        ]
        with self._lock:
            if any(m["control_id"] == control for m in self.messages):
                self.repeats += 1
            else:
                patient = str(message.segment("PID")[3]).split("^")[0]
                self.messages.append({"control_id": control, "patient": patient, "lines": lines})
            self.acks["AA"] += 1
        return ack(msh, "AA", "posted")

    def summary(self) -> dict[str, Any]:
        """What the billing system got, as its clerks would count it."""
        with self._lock:
            lines = [ln for m in self.messages for ln in m["lines"]]
            units: Counter[str] = Counter()
            for line in lines:
                sign = -1 if line["type"] == "CD" or line["units"] < 0 else 1
                code = "-".join([line["code"], *line["modifiers"]])
                units[code] += sign * abs(line["units"])
            return {
                "messages": len(self.messages),
                "messages_by_patient": dict(Counter(m["patient"] for m in self.messages)),
                "charges": sum(1 for ln in lines if ln["type"] == "CG" and ln["units"] > 0),
                "credits": sum(1 for ln in lines if ln["type"] == "CD" or ln["units"] < 0),
                "units_by_code": {c: n for c, n in sorted(units.items()) if n},
                "acks": dict(self.acks),
                "repeats_recognised": self.repeats,
            }
