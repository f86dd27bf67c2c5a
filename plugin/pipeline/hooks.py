"""The `encounter-discharge` hook: prefetch or fetch the visit, decide, deliver, answer with cards.

No Flask here: the web layer parses the request, this decides what happens, the web layer
shapes the answer (docs/architecture.md "Errors": blueprints stay thin).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from fhir_mappings.delivery import WritePlan
from plugin.config.files import Settings
from plugin.deadline import OutOfTime
from plugin.errors import BadRequest, DataUnavailable
from plugin.gateway.auth import BearerAuth, NoAuth
from plugin.gateway.client import FhirClient, iter_resources
from plugin.gateway.errors import FatalFhirError, FhirError
from plugin.gateway.factory import connect, connect_with
from plugin.gateway.gather import Gatherer, KnownServers, is_encounter
from plugin.jsontypes import Json
from plugin.pipeline.billing_day import DayRun, DaySource, WriteMode
from plugin.pipeline.runtime import Runtime
from plugin.pipeline.service import Job, day_of, execute
from plugin.render.cards import (
    decided_alone_card,
    deferred_card,
    gap_cards,
    summary_card,
    write_failed_card,
    written_card,
)
from plugin.rules.decision import Decision

log = logging.getLogger(__name__)

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
    # the patient's name and MRN for the worklist; the plans of care and goals for the
    # goal-directed check when the day is decided from the prefetch alone
    "patient": "Patient/{{context.patientId}}",
    "carePlans": "CarePlan?subject=Patient/{{context.patientId}}&status=active",
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
        if "?" not in query:  # a read: null when the EHR has no such resource (CDS Hooks)
            try:
                found[key] = client.read(query)
            except FatalFhirError as exc:
                if exc.status not in (404, 410):
                    raise
                found[key] = None
            continue
        page = client.search(query)
        found[key] = {"resourceType": "Bundle", "type": "searchset", "entry": page.entries}
    return found


class MalformedPrefetch(BadRequest):
    """A prefetched value that is not of its FHIR shape (CDS Hooks: a bad request, 400)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}", [(field, problem)])


class PrefetchMissing(DataUnavailable):
    """The visit's data was neither prefetched nor fetchable (CDS Hooks: 412)."""

    def __init__(self, why: str) -> None:
        super().__init__("Cannot evaluate therapy charges: no visit data.", [("prefetch", why)])


@dataclass(frozen=True)
class HookRequest:
    """What the hook needs of a CDS Hooks request: the encounter, where to read more, the
    token to read it with, and the prefetch."""

    encounter_id: str
    fhir_server: str | None
    access_token: str | None = field(repr=False)
    prefetch: dict[str, Any]


@dataclass
class HookOutcome:
    """The day's run and the answer made of it (`run` None: the EHR was too slow and nothing
    was prefetched to decide from)."""

    run: DayRun | None
    cards: list[Json]
    system_actions: list[Json]
    deferred: bool = False  # the time budget ran out: the run is the prefetch's alone

    @property
    def decision(self) -> Decision | None:
        return self.run.decision if self.run is not None else None

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
                "description": "Computes the CPT/HCPCS units of the PT, OT and SLP procedures "
                "of the encounter's billing day (the patient's visits of that date) under the "
                "payer's rules, flags documentation gaps, and writes (or proposes) ChargeItems.",
                "prefetch": PREFETCH,
            }
        ]
    }


MODES = {"preview": WriteMode.PREVIEW, "system-actions": WriteMode.PLAN, "direct": WriteMode.WRITE}


Defer = Callable[[str, str | None], bool]  # (encounter, day name) → queued


def handle_discharge(
    runtime: Runtime, request: HookRequest, now: datetime, defer: Defer | None = None
) -> HookOutcome:
    """Decide the encounter's billing day and answer with cards (and, by the write mode,
    write the ChargeItems or propose them as systemActions); the run is counted and recorded
    in the ledger as every trigger's is (plugin.pipeline.service.execute).

    The prefetch names the day; the patient's other visits of that date are read from the
    EHR (our own connection, or an allow-listed `fhirServer` with the hook's token). With no
    server to ask, the encounter is decided alone and the card says so.
    """
    # the service's own settings (write mode, servers, URLs), which no admin table changes:
    # execute() reads the managed tables in force once, for the decision itself
    settings = runtime.settings
    prefetched, complete = _prefetched(request.prefetch, request.encounter_id)
    server = _server_for(settings, request, runtime.gatherer(), runtime.servers)
    if not complete and server is None:
        raise PrefetchMissing(
            "prefetch key(s) "
            + ", ".join(k for k in REQUIRED_PREFETCH if not _present(request.prefetch, k))
            + " absent or failed, and no allowed fhirServer to fetch them from"
        )
    mode = MODES[settings.service.write_mode]
    job = Job(
        request.encounter_id,
        "cds-hook",
        mode,
        source=DaySource(server, prefetched if complete else None),
        report_write_errors=True,  # a failed write is a card: the decision stands
        proposes=True,  # in system-actions mode the plan goes back to the EHR to apply
        entered=now,
    )
    try:
        run = execute(runtime, job)
    except OutOfTime:
        return _out_of_time(runtime, request, prefetched if complete else None, now, defer)
    except FhirError as exc:
        if complete:
            raise
        raise PrefetchMissing(f"fetching the encounter failed: {exc}") from exc
    cards = [summary_card(run.decision), *gap_cards(run.decision, _override_system(settings))]
    if run.alone:
        cards.append(decided_alone_card(run.decision))
    _link_to_the_decision(cards, settings, request.encounter_id)
    if run.error:
        return _failed(run, cards)
    if mode is WriteMode.PLAN and isinstance(run.plan, WritePlan):  # the FHIR outlet's
        return HookOutcome(run, cards, _system_actions(run.plan))
    if mode is WriteMode.WRITE and run.plan is not None:
        cards.append(written_card(run.plan.summary(), run.written))
    return HookOutcome(run, cards, [])


def _out_of_time(
    runtime: Runtime,
    request: HookRequest,
    prefetched: list[Json] | None,
    now: datetime,
    defer: Defer | None,
) -> HookOutcome:
    """The answer when the time budget ran out: the prefetched visit decided alone (no EHR,
    nothing written) with its cards, and a card saying the day is decided later. Queued only
    in direct mode, the one where this call would have written (a notification's run writes)."""
    log.warning("the EHR did not answer within the hook's time budget: answered from prefetch")
    settings = runtime.settings  # (the run that ran out of time counted it: too-slow)
    queued = False
    if defer is not None and settings.service.write_mode == "direct":
        day = None
        if prefetched is not None:
            encounter = next((r for r in prefetched if is_encounter(r, request.encounter_id)), None)
            day = day_of(encounter)
        queued = defer(request.encounter_id, day)
    run = None
    cards: list[Json] = []
    if prefetched is not None:
        job = Job(
            request.encounter_id,
            "cds-hook",
            WriteMode.PREVIEW,
            source=DaySource(None, prefetched),  # the prefetch alone: no EHR, no lock, no wait
            outcome="deferred",
            entered=now,
        )
        run = execute(runtime, job)
        cards = [summary_card(run.decision), *gap_cards(run.decision, _override_system(settings))]
    cards.append(deferred_card(settings.service.hook_budget_seconds, queued))
    _link_to_the_decision(cards, settings, request.encounter_id)
    return HookOutcome(run, cards, [], deferred=True)


def _link_to_the_decision(cards: list[Json], settings: Settings, encounter_id: str) -> None:
    """Each card links to the visit's decision page (charges, holds and how to fix them), so a
    therapist goes from the card to the fix; only where the service's public URL is known
    (CDS Hooks 2.0 Card.links, type absolute), and, when the EHR registered us as a SMART app,
    as a SMART launch (type smart) that signs the clinician in on the way."""
    public = settings.service.public_url
    if not public:
        return
    url = f"{public.rstrip('/')}/decisions/{quote(encounter_id, safe='')}"
    link = {"label": "Open this visit's charges and holds in TheraCharge", "url": url}
    links = [{**link, "type": "absolute"}]
    if settings.service.smart_app_client_id:  # the EHR launches us in the clinician's session
        links.append(
            {
                "label": "Open in TheraCharge (SMART app)",
                "url": f"{public.rstrip('/')}/smart/launch",
                "type": "smart",
                "appContext": encounter_id,
            }
        )
    for card in cards:
        card.setdefault("links", []).extend(links)


def _failed(run: DayRun, cards: list[Json]) -> HookOutcome:
    """A failure to write is a warning card, never a 200 with no cards (docs/architecture.md
    "Errors")."""
    log.warning("writing charges failed: %s", run.error)
    return HookOutcome(run, [*cards, write_failed_card(str(run.error))], [])


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


def _server_for(
    settings: Settings, request: HookRequest, ours: Gatherer | None, known: KnownServers
) -> Gatherer | None:
    """Where the day is read from and written to: our own EHR's connection (built once per
    process), or a client for the request's fhirServer with the hook's own token — only one on
    the allow-list. Never a URL a request names but nobody configured
    (THERACHARGE_FHIR_SERVER_ALLOWLIST).
    """
    base = settings.fhir.base_url
    wanted = (request.fhir_server or "").rstrip("/") or None
    if wanted is None or wanted == base:
        if ours is None and base:
            return Gatherer(connect(settings.fhir))
        return ours
    if wanted not in settings.service.fhir_server_allowlist:
        log.warning("fhirServer is not on the allow-list; not contacted")
        return None
    auth = BearerAuth(request.access_token) if request.access_token else NoAuth()
    return Gatherer(connect_with(settings.fhir, wanted, auth), known)
