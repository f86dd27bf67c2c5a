"""Charge outlets: where a billing day's decided lines go, chosen per site (THERACHARGE_OUTLET).

Every outlet is driven the same way by the day's run (plugin/pipeline/billing_day.run_day),
so the ledger, the hold worklist, the dead letters, the page's re-run, `backfill`, the metrics
and the audit are the same for all of them:
1. `settle(decision)` (writing runs only): finish what an earlier run left unfinished (HL7 v2:
   a message whose ACK never came is sent again with its control id);
2. `plan(decision, resources, ctx, base)`: the day's lines against what the receiver holds, as
   create / change / cancel per line, unchanged lines left alone — a rerun plans nothing;
3. `send(plan, decision)`: deliver it. A concurrent change the receiver reports raises
   VersionConflict (the run reads the day again); lines the receiver refused come back in
   `Delivery.refused` with its words (the run holds them, `billing-system-refused`); a failure
   worth trying again raises (the trigger retries it, then it is a dead letter).

A new outlet is one module with these three methods, registered in `plugin/outlets/__init__`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from fhir_mappings.chargeitem import RenderContext
from fhir_mappings.delivery import LineFates
from plugin.jsontypes import Json
from plugin.rules.decision import Decision


class OutletPlan(Protocol):
    """What a run would send: each line's fate, and the payload."""

    def summary(self) -> dict[str, list[str]]:
        """Line keys by what happens to them: created, updated, unchanged, entered_in_error
        (cancelled), corrections_needed."""
        ...

    @property
    def payload(self) -> Json | None:
        """What would go to the receiver (None: nothing to send)."""
        ...


@dataclass
class PlanOfLines:
    """What an outlet's plan shares: each line's fate, and the lines it cannot write."""

    unsendable: dict[str, str] = field(default_factory=dict)  # line key → why
    fates: LineFates = field(default_factory=LineFates)  # what each line came to

    def summary(self) -> dict[str, list[str]]:
        return self.fates.summary()


@dataclass
class Delivery:
    """What became of a plan's lines that did not go through: by line key, the finding's code
    (`billing-system-refused`: the receiver said no; `charge-code-unmapped`: the outlet could
    not write it) and the words that say why."""

    refused: dict[str, tuple[str, str]] = field(default_factory=dict)
    answer: str = ""  # the receiver's acknowledgement code when it refused the message


class Outlet(Protocol):
    name: str

    def settle(self, decision: Decision) -> None: ...

    def plan(
        self, decision: Decision, resources: list[Json], ctx: RenderContext, base: str
    ) -> Any: ...

    def send(self, plan: Any, decision: Decision) -> Delivery: ...


def day_names(decision: Decision) -> tuple[str, ...]:
    """The day's line-key prefixes ("{owner}/{date}"), one per date its visits and lines have:
    an outlet's lines of this day, never those of the days around it."""
    dates = {v.date_of_service for v in decision.visits} | {ln.date for ln in decision.lines}
    return tuple(sorted(f"{decision.owner}/{d or 'undated'}" for d in dates))


def day_of_key(key: str, days: tuple[str, ...]) -> str:
    return next((d for d in days if key.startswith(f"{d}/")), days[0])
