"""Reading a billing day from the EHR in as few round trips as the server allows
(docs/architecture.md "How each trigger flows", "The billing day").

One search brings the patient's Encounters of the date with their Procedures, our existing
ChargeItems, the patient's Coverage and payer, the performers' roles, the linked Observations
and the diagnoses — each `_include`/`_revinclude` asked for only when the server's
CapabilityStatement lists it. What the server cannot include is fetched by a per-type search
instead. A trigger that names only an encounter costs one read of it first (its patient and
date of service pick the day).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from plugin.errors import Invalid
from plugin.gateway.client import FhirClient, iter_resources, next_link
from plugin.gateway.errors import FatalFhirError, error_for
from plugin.jsontypes import Json

log = logging.getLogger(__name__)

# (parameter, value, the per-type search to use when the server cannot include it)
# The fallback is a format string over the encounter (comma-separated: the day's encounters)
# and patient references.
WANTED: list[tuple[str, str, str | None]] = [
    ("_revinclude", "Procedure:encounter", "Procedure?encounter={encounter}"),
    ("_revinclude", "ChargeItem:context", "ChargeItem?context={encounter}"),
    ("_include", "Encounter:subject", None),
    ("_include", "Encounter:diagnosis", None),
    ("_include", "Encounter:location", None),
    ("_revinclude", "Condition:encounter", None),
    ("_revinclude:iterate", "Coverage:beneficiary", "Coverage?beneficiary={patient}"),
    ("_include:iterate", "Coverage:payor", None),
    ("_include:iterate", "Procedure:performer", None),
    ("_revinclude:iterate", "PractitionerRole:practitioner", None),
    ("_include:iterate", "Procedure:based-on", None),
    ("_revinclude:iterate", "Observation:part-of", "Observation?encounter={encounter}"),
    ("_revinclude:iterate", "Goal:subject", "Goal?subject={patient}"),
    # the patient's plans of care: an unlinked service is goal-directed under the active one
    ("_revinclude:iterate", "CarePlan:subject", "CarePlan?subject={patient}"),
]


class NotFound(FatalFhirError):
    """The encounter asked for is not on the server (our answer: 404)."""

    http_status, code = 404, "not-found"


@dataclass
class Gathered:
    """Everything read for one encounter."""

    resources: list[Json]
    capped: bool = False  # a search stopped at the page cap: the visit may be incomplete
    unread: tuple[str, ...] = ()  # resource types the server does not let us search
    # the patient's history, answered in the same batch as the day (Riders.history)
    history: Gathered | None = None
    # the performers' other procedures (one-on-one), answered in the same batch as the day
    # or the history
    colleagues: Gathered | None = None


@dataclass(frozen=True)
class HistoryAsk:
    """What the episode rules read of a patient's history (the site's episode settings)."""

    lookback_days: int
    report_codes: frozenset[tuple[str, str]]  # progress-report and plan-of-care codes
    orders: bool = False  # the 2025 certification route: signed orders and plans sent


@dataclass(frozen=True)
class Riders:
    """Searches a day's read carries in its batch, known before the day is read (a hook's
    prefetch tells the payer and the performers): the patient's history when the payer
    applies the episode rules, the performers' other procedures for the one-on-one check."""

    history: HistoryAsk | None = None
    performers: tuple[str, ...] = ()


class KnownServers:
    """The CapabilityStatements of the servers a process reads from, kept for `ttl` seconds:
    a hook naming an allow-listed `fhirServer` gets a Gatherer of its own per call (with the
    call's token), and would otherwise spend a round trip on `metadata` every time."""

    def __init__(self, ttl: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._known: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, base: str) -> Any:
        with self._lock:
            known = self._known.get(base)
        if known is None or self.clock() - known[0] > self.ttl:
            return None
        return known[1]

    def put(self, base: str, capabilities: Any) -> None:
        with self._lock:
            self._known[base] = (self.clock(), capabilities)


class Gatherer:
    """Reads visits from one FHIR server; learns its capabilities once (or from `known`)."""

    def __init__(self, client: FhirClient, known: KnownServers | None = None) -> None:
        self.client = client
        self.known = known
        self._supported: tuple[set[str], set[str], set[str]] | None = None
        self._batch = False  # the server takes batch Bundles (CapabilityStatement interaction)
        self._params: dict[str, set[str]] = {}  # type → its search parameters, as listed

    def supported(self) -> tuple[set[str], set[str], set[str]]:
        """(Encounter includes, revincludes anywhere, searchable types) from the server."""
        if self._supported is None:
            caps = self.known.get(self.client.base_url) if self.known else None
            if caps is None:
                caps = self.client.capabilities()
                if self.known is not None and isinstance(caps, dict):
                    self.known.put(self.client.base_url, caps)
            includes: set[str] = set()
            revincludes: set[str] = set()
            searchable: set[str] = set()
            for rest in (caps or {}).get("rest") or ():
                interactions = {i.get("code") for i in rest.get("interaction") or ()}
                self._batch = self._batch or "batch" in interactions
                for resource in rest.get("resource") or ():
                    kind = resource.get("type")
                    includes.update(resource.get("searchInclude") or ())
                    revincludes.update(resource.get("searchRevInclude") or ())
                    if resource.get("searchParam"):
                        searchable.add(kind)
                        self._params.setdefault(str(kind), set()).update(
                            str(p.get("name"))
                            for p in resource["searchParam"]
                            if isinstance(p, dict)
                        )
            self._supported = (includes, revincludes, searchable)
        return self._supported

    def query(self, *params: tuple[str, str]) -> tuple[str, list[tuple[str, str, str]]]:
        """The one Encounter search with `params`, and the fallbacks for what it cannot include."""
        includes, revincludes, searchable = self.supported()
        wanted = list(params)
        fallbacks = []
        for name, value, fallback in WANTED:
            known = revincludes if name.startswith("_revinclude") else includes
            if value in known:
                wanted.append((name, value))
            elif fallback and fallback.split("?", 1)[0] in searchable:
                fallbacks.append((name, value, fallback))
        return "Encounter?" + urlencode(wanted, safe=":"), fallbacks

    def encounter(self, encounter_id: str) -> Gathered:
        """One encounter with everything billing needs (no other visit of its day)."""
        gathered = self._search([("_id", encounter_id)])
        if not any(is_encounter(r, encounter_id) for r in gathered.resources):
            raise NotFound(f"Encounter/{encounter_id} is not on the EHR", 404)
        return gathered

    def day(self, patient: str, date: str, riders: Riders | None = None) -> Gathered:
        """The patient's encounters of `date` with everything billing needs, in one search.

        The date of service is the date an encounter's start is written with, in its own time
        zone; a server may compare periods in UTC, where a visit at 21:00 at -05:00 falls on
        the next day. So the search takes the day before and after as well (an offset is at
        most 14 hours), and the caller keeps the encounters whose date of service it is.

        With `riders` and a server that takes batch Bundles, the history and the colleagues'
        searches go in the same Bundle as the day's (one round trip); their answers are the
        result's `history` and `colleagues` (None where that part failed: the reader asks
        again). Without a batch they are left to the reader, asked apart.
        """
        since, until = around(date, 1)
        params = [("subject", patient), ("date", f"ge{since}"), ("date", f"le{until}")]
        self.supported()
        if riders is None or not self._batch:
            return self._search(params)
        path, fallbacks = self.query(*params)
        history = self.history_searches(patient, date, riders.history) if riders.history else None
        colleagues = self.colleagues_query(riders.performers, date)
        queries = [path, *(history[0] if history else ()), *([colleagues] if colleagues else ())]
        if len(queries) == 1:
            return self._search(params)
        answers = self._batch_of(queries, "day")
        status, bundle, _ = answers[0]
        if not status.startswith("2"):
            code = int(status[:3]) if status[:3].isdigit() else 502
            raise error_for(code, self.client.url("Encounter"), _outcome(answers[0]), "GET")
        gathered = Gathered(list(iter_resources(bundle.get("entry") or [])))
        following = next_link(bundle)
        if following:  # the day's search goes on in pages: read them as a search would
            page = self.client.search(following)
            gathered.resources.extend(iter_resources(page.entries))
            gathered.capped = page.capped
        self._complete(gathered, fallbacks)
        if history is not None:
            told = Gathered([], unread=history[1])
            try:
                self._take_history(told, answers[1 : 1 + len(history[0])])
                gathered.history = told
            except FatalFhirError as exc:
                log.warning("the history searches in the day's batch failed: %s", exc)
        if colleagues:
            try:
                gathered.colleagues = self._take_colleagues(answers[-1])
            except FatalFhirError as exc:
                log.warning("the performers' services search in the day's batch failed: %s", exc)
        return gathered

    def read_encounter(self, encounter_id: str) -> Json:
        """The Encounter itself; NotFound when the EHR has none by that id."""
        try:
            encounter: Json = self.client.read(f"Encounter/{encounter_id}")
        except FatalFhirError as exc:
            if exc.status in (404, 410):
                raise NotFound(f"Encounter/{encounter_id} is not on the EHR", 404) from exc
            raise
        return encounter

    def encounter_day(self, encounter_id: str) -> Gathered:
        """The day of an encounter named by id: one read of it, then its day. An encounter
        without a patient or a date of service is read on its own."""
        patient, date = encounter_patient_and_date(self.read_encounter(encounter_id))
        if patient is None or date is None:
            return self.encounter(encounter_id)
        gathered = self.day(patient, date)
        if not any(is_encounter(r, encounter_id) for r in gathered.resources):
            # Not matched by the date search (a server's own reading of the period): read alone.
            extra = self.encounter(encounter_id)
            gathered.resources.extend(extra.resources)
            gathered.capped = gathered.capped or extra.capped
        return gathered

    def history(
        self,
        patient: str,
        date: str,
        ask: HistoryAsk,
        colleagues: str | None = None,
    ) -> Gathered:
        """The patient's episode around a billing day (`history_searches`), in one batch where
        the server takes one, else one search after another. With a batch, the `colleagues`
        search (`colleagues_query`) rides in the same Bundle: its answer is the result's
        `colleagues` (one round trip for both)."""
        searches, unread = self.history_searches(patient, date, ask)
        gathered = Gathered([], unread=unread)
        if not self._batch:  # one search after another
            for query in searches:
                page = self.client.search(query)
                gathered.resources.extend(iter_resources(page.entries))
                gathered.capped = gathered.capped or page.capped
            return gathered
        if not searches:
            return gathered
        answers = self._batch_of([*searches, *([colleagues] if colleagues else [])], "history")
        self._take_history(gathered, answers[: len(searches)])
        if colleagues:
            gathered.colleagues = self._take_colleagues(answers[-1])
        return gathered

    def history_searches(
        self, patient: str, date: str, ask: HistoryAsk
    ) -> tuple[list[str], tuple[str, ...]]:
        """The searches of the patient's episode around a billing day, and the types left out
        because the server does not search them: finished encounters `lookback_days` back, care
        plans, progress reports (Procedure, Observation, DocumentReference with a report code,
        with their writers and the writers' roles where the server can include them), signed
        plans of care (DocumentReference with a plan code, the Provenance signatures of plans
        and documents; with `orders`, the signed orders and the Communications that sent the
        plan) and the year's charges before the date (for the KX estimate)."""
        day = calendar_date(date)
        since, _ = around(date, ask.lookback_days)
        subject = quote(patient, safe="/")
        codes = quote(",".join(f"{s}|{c}" for s, c in sorted(ask.report_codes)), safe="|,:/")
        includes, revincludes, searchable = self.supported()
        # the roles of every practitioner a search below includes
        roles = ["_revinclude:iterate=PractitionerRole:practitioner"] * (
            "PractitionerRole:practitioner" in revincludes
        )
        # the signatures that certify a plan or sign off a report (a Provenance targeting it),
        # their signers and the signers' roles
        signatures: list[str] = []
        if "Provenance:target" in revincludes:
            signatures = ["_revinclude=Provenance:target"]
            if "Provenance:agent" in includes:
                signatures += ["_include:iterate=Provenance:agent", *roles]

        def asking(query: str, *also: list[str]) -> str:
            """The query with the include parameters of `also`, each once."""
            return query + "".join(f"&{p}" for p in dict.fromkeys(p for ps in also for p in ps))

        searches = [
            f"Encounter?subject={subject}&status=finished&date=ge{since}&date=le{date}&_count=500",
            asking(f"CarePlan?subject={subject}&_count=100", signatures),
            f"ChargeItem?subject={subject}&occurrence=ge{day.year}-01-01&occurrence=lt{date}"
            "&_count=1000",
        ]
        if ask.orders:  # the 2025 certification route: signed orders, the plan sent to them
            requester = ["_include=ServiceRequest:requester", *roles] * (
                "ServiceRequest:requester" in includes
            )
            searches += [
                asking(f"ServiceRequest?subject={subject}&_count=100", requester),
                f"Communication?subject={subject}&sent=ge{since}&_count=100",
            ]
        if codes:
            # who wrote each report (or authenticated a plan), and their roles (§220.3 D)
            writers = {
                "Procedure": ("Procedure:performer",),
                "Observation": ("Observation:performer",),
                "DocumentReference": (
                    "DocumentReference:author",
                    "DocumentReference:authenticator",
                ),
            }
            for kind, by in (
                ("Procedure", "code"), ("Observation", "code"), ("DocumentReference", "type"),
            ):  # fmt: skip
                wanted = [f"_include={i}" for i in writers[kind] if i in includes]
                searches.append(
                    asking(
                        f"{kind}?subject={subject}&{by}={codes}&date=ge{since}&_count=100",
                        wanted,
                        roles if wanted else [],
                        signatures,
                    )
                )
        if not searchable:  # a server that lists none is not taken at its word: ask anyway
            return searches, ()
        unread = tuple(q.split("?", 1)[0] for q in searches if q.split("?", 1)[0] not in searchable)
        return [q for q in searches if q.split("?", 1)[0] in searchable], unread

    def _batch_of(self, queries: list[str], what: str) -> list[tuple[str, Json, str]]:
        """The searches in one batch Bundle: each one's (status, searchset, query), in order."""
        batch = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "GET", "url": q}} for q in queries],
        }
        answer = self.client.batch(batch)
        entries = [e for e in (answer or {}).get("entry") or () if isinstance(e, dict)]
        if len(entries) != len(queries):
            raise FatalFhirError(
                f"the {what} batch answered {len(entries)} of {len(queries)} searches", None
            )
        answers = []
        for entry, query in zip(entries, queries, strict=True):
            response = entry.get("response")
            response = response if isinstance(response, dict) else {}
            status = str(response.get("status", ""))
            # the searchset; a failed entry's OperationOutcome (in the entry or the response)
            bundle = entry.get("resource") or response.get("outcome")
            answers.append((status, bundle if isinstance(bundle, dict) else {}, query))
        return answers

    def _take_history(self, gathered: Gathered, answers: list[tuple[str, Json, str]]) -> None:
        for status, bundle, _ in answers:
            if not status.startswith("2"):
                raise FatalFhirError(f"a history search failed: {status}", None)
            gathered.resources.extend(iter_resources(bundle.get("entry") or []))
            if next_link(bundle):
                gathered.capped = True

    def _take_colleagues(self, answer: tuple[str, Json, str]) -> Gathered:
        """The colleagues' search's answer in a batch; refused by the server (400): not checked."""
        status, bundle, _ = answer
        if status.startswith("400"):
            return Gathered([], unread=("Procedure",))
        if not status.startswith("2"):
            raise FatalFhirError(f"the performers' services search failed: {status}", None)
        return Gathered(
            list(iter_resources(bundle.get("entry") or [])), capped=bool(next_link(bundle))
        )

    def colleagues(self, performers: Iterable[str], date: str) -> Gathered:
        """The procedures of the performers around a date of service, in one search (the day
        before and after as well: a server may compare in UTC), for the one-on-one check across
        patients. Nothing when the server does not search Procedure."""
        wanted = sorted(set(performers))
        query = self.colleagues_query(wanted, date)
        if query is None:  # a server that does not search Procedure by performer and date
            return Gathered([], unread=("Procedure",) if wanted else ())
        page = self.client.search(query)
        return Gathered(list(iter_resources(page.entries)), capped=page.capped)

    def colleagues_query(self, performers: Iterable[str], date: str) -> str | None:
        """The one search of the performers' procedures around `date`; None when there are no
        performers or the server does not search Procedure by performer and date."""
        _, _, searchable = self.supported()
        wanted = sorted(set(performers))
        listed = self._params.get("Procedure", set())
        if not wanted or (searchable and not {"performer", "date"} <= listed):
            return None
        since, until = around(date, 1)
        return "Procedure?" + urlencode(
            [
                ("performer", ",".join(wanted)),
                ("date", f"ge{since}"),
                ("date", f"le{until}"),
                ("status", "completed"),
                ("_count", "500"),
            ],
            safe="/,",
        )

    def _search(self, params: list[tuple[str, str]]) -> Gathered:
        path, fallbacks = self.query(*params)
        page = self.client.search(path)
        gathered = Gathered(list(iter_resources(page.entries)), capped=page.capped)
        self._complete(gathered, fallbacks)
        return gathered

    def _complete(self, gathered: Gathered, fallbacks: list[tuple[str, str, str]]) -> None:
        """What the Encounter search could not include, read by a search of its own: the
        fallbacks of WANTED, and diagnoses no include brought."""
        encounters = [r for r in gathered.resources if r.get("resourceType") == "Encounter"]
        if not encounters:
            return
        refs = {
            "encounter": ",".join(
                quote(f"Encounter/{e['id']}", safe="") for e in encounters if _text(e.get("id"))
            ),
            "patient": quote(_text(_field(encounters[0], "subject", "reference")), safe=""),
        }
        for _, _, fallback in fallbacks:
            extra = self.client.search(fallback.format(**refs))
            gathered.resources.extend(iter_resources(extra.entries))
            gathered.capped = gathered.capped or extra.capped
        self._missing_diagnoses(encounters, gathered)

    def _missing_diagnoses(self, encounters: list[Json], gathered: Gathered) -> None:
        """Conditions the encounters name as diagnoses that no include brought: one more read."""
        have = {
            f"Condition/{r.get('id')}"
            for r in gathered.resources
            if r.get("resourceType") == "Condition"
        }
        wanted = [
            _text(_field(d, "condition", "reference"))
            for encounter in encounters
            for d in _list(encounter.get("diagnosis"))
        ]
        missing = sorted(
            {w.split("/")[-1] for w in wanted if w.startswith("Condition/") and w not in have}
        )
        if missing:
            page = self.client.search("Condition?" + urlencode({"_id": ",".join(missing)}))
            gathered.resources.extend(iter_resources(page.entries))
            gathered.capped = gathered.capped or page.capped


def _outcome(answer: tuple[str, Json, str]) -> Any:
    """The OperationOutcome a batch entry's failure carried (in its resource or its
    response.outcome), for the error's words."""
    _, bundle, _ = answer
    return bundle if bundle.get("resourceType") == "OperationOutcome" else None


def _field(value: Any, *path: str) -> Any:
    """The element at `path` of a resource read from the EHR, or None where any step is not
    an object (the EHR's JSON is input: any element may have any shape)."""
    for step in path:
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def is_encounter(resource: Json, encounter_id: str) -> bool:
    """The resource is the Encounter with this id."""
    return resource.get("resourceType") == "Encounter" and resource.get("id") == encounter_id


def encounter_patient_and_date(encounter: Any) -> tuple[str | None, str | None]:
    """The subject reference and the date of service (period.start's date) of an encounter;
    None for a date that is no day of the calendar (`2026-13-45`): such an encounter is read
    and decided on its own, where its unreadable date is a finding."""
    if not isinstance(encounter, dict):
        return None, None
    subject = encounter.get("subject")
    patient = subject.get("reference") if isinstance(subject, dict) else None
    period = encounter.get("period")
    start = period.get("start") if isinstance(period, dict) else None
    date = start[:10] if isinstance(start, str) and _is_date(start[:10]) else None
    return (patient if isinstance(patient, str) and patient else None), date


def _is_date(text: str) -> bool:
    """YYYY-MM-DD in ASCII digits naming a real day (FHIR date, years 0001–9999)."""
    if len(text) != 10 or not text.isascii():
        return False
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


class UnreadableDate(Invalid):
    """A date of service that is no day of the calendar: nothing to search by (422 naming it;
    a visit whose encounter has it is read on its own, where the date is a finding)."""


def calendar_date(date: str) -> dt.date:
    """A date of service as a date; UnreadableDate (never a bare ValueError) otherwise."""
    if not _is_date(date):
        what = f"date of service {date[:40]!r} is not a calendar date"
        raise UnreadableDate(what, [("date", what)])
    return dt.date.fromisoformat(date)


def around(date: str, days: int) -> tuple[str, str]:
    """The dates `days` before and after a date of service, kept within the calendar's years
    0001–9999 (a visit dated 0001-01-01 or 9999-12-31 searches up to the calendar's edge
    instead of overflowing)."""
    day = calendar_date(date)
    before = (
        day - dt.timedelta(days=days)
        if day > dt.date.min + dt.timedelta(days=days)
        else dt.date.min
    )
    after = (
        day + dt.timedelta(days=days)
        if day < dt.date.max - dt.timedelta(days=days)
        else dt.date.max
    )
    return before.isoformat(), after.isoformat()
