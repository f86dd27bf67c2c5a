"""Reading one visit from the EHR in as few round trips as the server allows (DESIGN.md "gather").

One search brings the Encounter with its Procedures, our existing ChargeItems, the patient's
Coverage and payer, the performers' roles, the linked Observations and the diagnoses — each
`_include`/`_revinclude` asked for only when the server's CapabilityStatement lists it. What
the server cannot include is fetched by a per-type search instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from plugin.gateway.client import FhirClient, iter_resources
from plugin.gateway.errors import FatalFhirError

Json = dict[str, Any]

# (parameter, value, the per-type search to use when the server cannot include it)
# The fallback is a format string over the encounter, patient and procedure references.
WANTED: list[tuple[str, str, str | None]] = [
    ("_revinclude", "Procedure:encounter", "Procedure?encounter={encounter}"),
    ("_revinclude", "ChargeItem:context", "ChargeItem?context={encounter}"),
    ("_include", "Encounter:subject", None),
    ("_include", "Encounter:diagnosis", None),
    ("_revinclude", "Condition:encounter", None),
    ("_revinclude:iterate", "Coverage:beneficiary", "Coverage?beneficiary={patient}"),
    ("_include:iterate", "Coverage:payor", None),
    ("_include:iterate", "Procedure:performer", None),
    ("_revinclude:iterate", "PractitionerRole:practitioner", None),
    ("_include:iterate", "Procedure:based-on", None),
    ("_revinclude:iterate", "Observation:part-of", "Observation?encounter={encounter}"),
    ("_revinclude:iterate", "Goal:subject", "Goal?subject={patient}"),
]


class NotFound(FatalFhirError):
    """The encounter asked for is not on the server."""


@dataclass
class Gathered:
    """Everything read for one encounter."""

    resources: list[Json]
    capped: bool = False  # a search stopped at the page cap: the visit may be incomplete


class Gatherer:
    """Reads visits from one FHIR server; learns its capabilities once."""

    def __init__(self, client: FhirClient) -> None:
        self.client = client
        self._supported: tuple[set[str], set[str], set[str]] | None = None

    def supported(self) -> tuple[set[str], set[str], set[str]]:
        """(Encounter includes, revincludes anywhere, searchable types) from the server."""
        if self._supported is None:
            caps = self.client.capabilities()
            includes: set[str] = set()
            revincludes: set[str] = set()
            searchable: set[str] = set()
            for rest in (caps or {}).get("rest") or ():
                for resource in rest.get("resource") or ():
                    kind = resource.get("type")
                    includes.update(resource.get("searchInclude") or ())
                    revincludes.update(resource.get("searchRevInclude") or ())
                    if resource.get("searchParam"):
                        searchable.add(kind)
            self._supported = (includes, revincludes, searchable)
        return self._supported

    def query(self, encounter_id: str) -> tuple[str, list[tuple[str, str, str]]]:
        """The one search, and the fallbacks for what it cannot include."""
        includes, revincludes, searchable = self.supported()
        params = [("_id", encounter_id)]
        fallbacks = []
        for name, value, fallback in WANTED:
            known = revincludes if name.startswith("_revinclude") else includes
            if value in known:
                params.append((name, value))
            elif fallback and fallback.split("?", 1)[0] in searchable:
                fallbacks.append((name, value, fallback))
        return "Encounter?" + urlencode(params, safe=":"), fallbacks

    def encounter(self, encounter_id: str) -> Gathered:
        path, fallbacks = self.query(encounter_id)
        page = self.client.search(path)
        resources = list(iter_resources(page.entries))
        gathered = Gathered(resources, capped=page.capped)
        encounter = next(
            (
                r
                for r in resources
                if r.get("resourceType") == "Encounter" and r.get("id") == encounter_id
            ),
            None,
        )
        if encounter is None:
            raise NotFound(f"Encounter/{encounter_id} is not on the EHR", 404)
        refs = {
            "encounter": quote(f"Encounter/{encounter_id}", safe=""),
            "patient": quote(str((encounter.get("subject") or {}).get("reference", "")), safe=""),
        }
        for _, _, fallback in fallbacks:
            extra = self.client.search(fallback.format(**refs))
            gathered.resources.extend(iter_resources(extra.entries))
            gathered.capped = gathered.capped or extra.capped
        self._missing_diagnoses(encounter, gathered)
        return gathered

    def _missing_diagnoses(self, encounter: Json, gathered: Gathered) -> None:
        """Conditions the encounter names as diagnoses that no include brought: one more read."""
        have = {
            f"Condition/{r.get('id')}"
            for r in gathered.resources
            if r.get("resourceType") == "Condition"
        }
        wanted = [
            str((d.get("condition") or {}).get("reference", ""))
            for d in encounter.get("diagnosis") or ()
            if isinstance(d, dict)
        ]
        missing = sorted(
            {w.split("/")[-1] for w in wanted if w.startswith("Condition/") and w not in have}
        )
        if missing:
            page = self.client.search("Condition?" + urlencode({"_id": ",".join(missing)}))
            gathered.resources.extend(iter_resources(page.entries))
            gathered.capped = gathered.capped or page.capped
