"""The FHIR outlet (the default): ChargeItems in the EHR, the day's differences in one
transaction (fhir_mappings/delivery.py: conditional creates, version-checked updates, a billed
ChargeItem never touched). What the EHR already holds is read with the day."""

from __future__ import annotations

from fhir_mappings.chargeitem import RenderContext
from fhir_mappings.delivery import WritePlan, of_the_day, our_charge_items, plan_writes
from plugin.gateway.client import FhirClient
from plugin.gateway.errors import VersionConflict
from plugin.jsontypes import Json
from plugin.outlets.base import Delivery
from plugin.rules.decision import Decision


class TakenButStale(VersionConflict):
    """The EHR took the transaction, but a conditional create of ours matched a ChargeItem
    another run wrote after we read the day (200 rather than 201): that line holds that run's
    content. The run reads the day again; what was sent stands."""


class FhirOutlet:
    name = "fhir"

    def __init__(self, client: FhirClient | None) -> None:
        self.client = client

    def settle(self, decision: Decision) -> None:
        """Nothing is left unfinished: a transaction is all or nothing."""

    def plan(
        self, decision: Decision, resources: list[Json], ctx: RenderContext, base: str
    ) -> WritePlan:
        existing = of_the_day(
            our_charge_items(resources, ctx.definitions.line_identifier), decision
        )
        return plan_writes(decision, existing, ctx, base)

    def send(self, plan: WritePlan, decision: Decision) -> Delivery:
        bundle = plan.bundle
        if bundle is None:  # nothing differs: nothing to send
            return Delivery()
        if self.client is None:  # run_day sends a plan with writes only to an EHR it read
            raise ValueError("the FHIR outlet sends a transaction to the EHR it read the day from")
        answer = self.client.transaction(bundle)
        if _created_elsewhere(bundle, answer):
            raise TakenButStale("a line was created by another run since the day was read")
        return Delivery()


def _created_elsewhere(bundle: Json, answer: object) -> bool:
    """A conditional create of ours that matched an existing ChargeItem (200 rather than 201).
    The transaction-response lists its entries in the order of the request (FHIR R4 Bundle,
    transaction processing rules)."""
    entries = answer.get("entry") if isinstance(answer, dict) else None
    if not isinstance(entries, list):
        return False
    for request, response in zip(bundle["entry"], entries, strict=False):
        if request["request"]["method"] != "POST" or not isinstance(response, dict):
            continue
        status = str((response.get("response") or {}).get("status", ""))
        if status.startswith("200"):
            return True
    return False
