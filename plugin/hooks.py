"""The `encounter-discharge` hook: prefetch or fetch the visit, decide, deliver, answer with cards.

No Flask here: the web layer parses the request, this decides what happens, the web layer
shapes the answer (DESIGN.md: blueprints stay thin).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fhir_mappings.delivery import WritePlan, our_charge_items, plan_writes
from plugin.cards import gap_cards, summary_card
from plugin.gateway.auth import BearerAuth, NoAuth
from plugin.gateway.client import FhirClient, iter_resources
from plugin.gateway.errors import FhirError, VersionConflict
from plugin.gateway.factory import connect, connect_with
from plugin.gateway.gather import Gatherer
from plugin.rules.decision import Decision
from plugin.service import decide_gathered, process_encounter, render_context
from plugin.settings import Settings

log = logging.getLogger(__name__)
Json = dict[str, Any]

SERVICE_ID = "therapy-charges"
HOOK = "encounter-discharge"
PREFETCH = {
    "encounter": "Encounter/{{context.encounterId}}",
    "procedures": (
        "Procedure?encounter={{context.encounterId}}&_include=Procedure:performer"
        "&_revinclude:iterate=PractitionerRole:practitioner"
    ),
    "conditions": "Condition?encounter={{context.encounterId}}",
    "coverage": "Coverage?beneficiary=Patient/{{context.patientId}}&_include=Coverage:payor",
    "observations": "Observation?encounter={{context.encounterId}}",
    "chargeItems": "ChargeItem?context={{context.encounterId}}",
}
REQUIRED_PREFETCH = ("encounter", "procedures")


def prefetch_from(client: FhirClient, encounter_id: str) -> Json:
    """What an EHR sends for our templates: each filled in and read from `client` (the demo and
    the tests play the EHR with it)."""
    encounter = client.read(f"Encounter/{encounter_id}")
    patient = encounter["subject"]["reference"].split("/", 1)[1]
    found: Json = {"encounter": encounter}
    for key, template in PREFETCH.items():
        if key == "encounter":
            continue
        query = template.replace("{{context.encounterId}}", encounter_id).replace(
            "{{context.patientId}}", patient
        )
        page = client.search(query)
        found[key] = {"resourceType": "Bundle", "type": "searchset", "entry": page.entries}
    return found


class MalformedPrefetch(ValueError):
    """A prefetched value that is not of its FHIR shape (CDS Hooks: a bad request, 400)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class PrefetchMissing(Exception):
    """The visit's data was neither prefetched nor fetchable (CDS Hooks: 412)."""


@dataclass(frozen=True)
class HookRequest:
    hook_instance: str
    encounter_id: str
    patient_id: str
    user_id: str
    fhir_server: str | None
    access_token: str | None = field(repr=False)
    prefetch: dict[str, Any]


@dataclass
class HookOutcome:
    decision: Decision
    cards: list[Json]
    system_actions: list[Json]
    outcome: str  # written, unchanged, preview, system-actions, failed
    plan: WritePlan | None
    error: str | None = None

    def response(self) -> Json:
        body: Json = {"cards": self.cards}
        if self.system_actions:
            body["systemActions"] = self.system_actions
        return body


def discovery() -> Json:
    """GET /cds-services (CDS Hooks 2.0 §Discovery)."""
    return {
        "services": [
            {
                "hook": HOOK,
                "id": SERVICE_ID,
                "title": "Therapy charge capture",
                "description": "Computes the CPT/HCPCS units of the encounter's PT, OT and SLP "
                "procedures under the payer's rules, flags documentation gaps, and writes (or "
                "proposes) ChargeItems.",
                "prefetch": PREFETCH,
            }
        ]
    }


def handle_discharge(settings: Settings, request: HookRequest, now: datetime) -> HookOutcome:
    resources, complete = _prefetched(request.prefetch, request.encounter_id)
    server: FhirClient | None = None
    if not complete:
        server = _server_for(settings, request)
        if server is None:
            raise PrefetchMissing(
                "prefetch key(s) "
                + ", ".join(k for k in REQUIRED_PREFETCH if not _present(request.prefetch, k))
                + " absent or failed, and no allowed fhirServer to fetch them from"
            )
        try:
            resources = Gatherer(server).encounter(request.encounter_id).resources
        except FhirError as exc:
            raise PrefetchMissing(f"fetching the encounter failed: {exc}") from exc
    decision = decide_gathered(settings, resources, request.encounter_id)
    cards = [summary_card(decision), *gap_cards(decision, _override_system(settings))]
    mode = settings.service.write_mode
    if mode == "preview":
        return HookOutcome(decision, cards, [], "preview", None)
    ctx = render_context(settings, now)
    client = server or _server_for(settings, request)
    if mode == "direct" and server is None and not _present(request.prefetch, "chargeItems"):
        try:
            resources = resources + _existing_charge_items(client, request.encounter_id)
        except FhirError as exc:
            return _failed(decision, cards, WritePlan(), f"reading existing ChargeItems: {exc}")
    existing = our_charge_items(resources, ctx.definitions.line_identifier)
    base = client.base_url if client else (request.fhir_server or "")
    plan = plan_writes(decision, existing, ctx, base)
    if mode == "system-actions":
        return HookOutcome(decision, cards, _system_actions(plan), "system-actions", plan)
    return _write(settings, request, decision, cards, plan, client, now)


def _write(
    settings: Settings,
    request: HookRequest,
    decision: Decision,
    cards: list[Json],
    plan: WritePlan,
    client: FhirClient | None,
    now: datetime,
) -> HookOutcome:
    """Direct mode: one transaction; a conflict re-reads from the EHR; a failure is a card."""
    if plan.bundle is None:
        cards.append(_info(f"ChargeItems already up to date ({len(plan.unchanged)} unchanged)."))
        return HookOutcome(decision, cards, [], "unchanged", plan)
    if client is None:
        return _failed(decision, cards, plan, "no FHIR server to write to")
    try:
        client.transaction(plan.bundle)
    except VersionConflict:
        try:
            run = process_encounter(settings, Gatherer(client), request.encounter_id, now)
        except FhirError as exc:
            return _failed(decision, cards, plan, str(exc))
        plan = run.plan
    except FhirError as exc:
        return _failed(decision, cards, plan, str(exc))
    cards.append(_info(_written_summary(plan)))
    return HookOutcome(decision, cards, [], "written", plan)


def _failed(decision: Decision, cards: list[Json], plan: WritePlan, error: str) -> HookOutcome:
    """A failure to write is a warning card, never a 200 with no cards (DESIGN.md "Errors")."""
    log.warning("writing charges failed: %s", error)
    card = {
        "summary": "Charges were NOT written to the EHR; billing must re-run this encounter.",
        "indicator": "warning",
        "detail": f"The EHR refused or could not take the ChargeItems: {error}",
        "source": {"label": "TheraCharge"},
    }
    return HookOutcome(decision, [*cards, card], [], "failed", plan, error)


def _info(summary: str) -> Json:
    return {"summary": summary[:139], "indicator": "info", "source": {"label": "TheraCharge"}}


def _written_summary(plan: WritePlan) -> str:
    parts = [
        f"{len(plan.created)} created" if plan.created else "",
        f"{len(plan.updated)} updated" if plan.updated else "",
        f"{len(plan.voided)} entered-in-error" if plan.voided else "",
        f"{len(plan.unchanged)} unchanged" if plan.unchanged else "",
    ]
    return "ChargeItems written: " + ", ".join(p for p in parts if p) + "."


def _system_actions(plan: WritePlan) -> list[Json]:
    """The creates and updates as CDS Hooks systemActions, for EHRs that apply them."""
    actions = []
    for entry in plan.entries:
        method = entry["request"]["method"]
        resource = entry["resource"]
        kind = "create" if method == "POST" else "update"
        actions.append(
            {
                "type": kind,
                "description": f"{kind} {resource['resourceType']}",
                "resource": resource,
            }
        )
    return actions


def _existing_charge_items(client: FhirClient | None, encounter_id: str) -> list[Json]:
    """Our ChargeItems of the encounter, when the EHR did not prefetch them: without them a
    changed line could not be updated (DESIGN.md "Idempotency")."""
    if client is None:
        return []
    page = client.search(f"ChargeItem?context=Encounter/{encounter_id}")
    return list(iter_resources(page.entries))


def _override_system(settings: Settings) -> str:
    return f"{settings.extension_base}/CodeSystem/override-reason"


def _present(prefetch: dict[str, Any], key: str) -> bool:
    value = prefetch.get(key, ...)
    return value is not ... and not _is_outcome(value)


def _is_outcome(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"


def _prefetched(prefetch: dict[str, Any], encounter_id: str) -> tuple[list[Json], bool]:
    """The resources the EHR prefetched, and whether every key we need came.

    A `null` value means the EHR has no such data; an OperationOutcome means it failed to get it.
    The visit itself must be there: the encounter named in the context.
    """
    resources: list[Json] = []
    encounter = prefetch.get("encounter")
    complete = all(_present(prefetch, key) for key in REQUIRED_PREFETCH) and (
        isinstance(encounter, dict)
        and encounter.get("resourceType") == "Encounter"
        and encounter.get("id") == encounter_id
    )
    for key, value in prefetch.items():
        if value is None or _is_outcome(value) or not isinstance(value, dict):
            continue
        if value.get("resourceType") == "Bundle":
            entries = value.get("entry") or []
            if not isinstance(entries, list):
                raise MalformedPrefetch(f"prefetch.{key}.entry", "expected a list of entries")
            resources.extend(iter_resources([e for e in entries if isinstance(e, dict)]))
        elif isinstance(value.get("resourceType"), str):
            resources.append(value)
    return resources, complete


def _server_for(settings: Settings, request: HookRequest) -> FhirClient | None:
    """A client for the request's fhirServer — only one on the allow-list — or our own EHR.

    Never a URL a request names but nobody configured (THERACHARGE_FHIR_SERVER_ALLOWLIST).
    """
    ours = settings.fhir.base_url
    wanted = (request.fhir_server or "").rstrip("/") or None
    if wanted is None or wanted == ours:
        return connect(settings.fhir) if ours else None
    if wanted not in settings.service.fhir_server_allowlist:
        log.warning("fhirServer is not on the allow-list; not contacted")
        return None
    auth = BearerAuth(request.access_token) if request.access_token else NoAuth()
    return connect_with(settings.fhir, wanted, auth)
