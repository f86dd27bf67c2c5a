"""Which part of a large file each resource belongs to, so that a file can be decided a part at
a time (bounded memory) or a part per process (several cores), each patient whole in one part.

A first pass over the file (`PartitionPlan.note`, resource by resource) notes each
Encounter's patient and each Bundle entry's fullUrl; then each resource's *owner* is the
patient of the encounter it belongs to, else the patient it is about; a resource about no
patient (a Practitioner, an Organization, a Location …) belongs to every part. A patient's
encounters, procedures, observations, conditions, coverage, goals and plans therefore land in
the same part, and so do their billing days and their episode of care. What looks across
patients (one-on-one across patients) looks through an index of the whole file's procedures,
made in the first pass.
"""

from __future__ import annotations

import zlib

from fhir_mappings.facts import normalize, reference
from plugin.jsontypes import Json

# The fields that name the patient a resource is about, in the order they are looked at
_PATIENT_FIELDS = ("subject", "patient", "beneficiary")
# The fields that name the encounter a resource belongs to
_ENCOUNTER_FIELDS = ("encounter", "context")


class PartitionPlan:
    """The owners of a file's resources, from one pass over it."""

    def __init__(self) -> None:
        self.encounters = 0  # how many Encounters the file has
        self._aliases: dict[str, str] = {}  # a Bundle entry's fullUrl → Type/id
        self._encounter_subject: dict[str, str | None] = {}  # encounter key → subject as written

    def note(self, index: int, resource: Json, full_url: str | None) -> None:
        """The first pass, one resource at a time (`index`: its position in the file): every
        Encounter's patient, every fullUrl's resource. Owners are asked once all are noted."""
        key = _key(resource, full_url, index)
        if full_url:
            self._aliases[full_url] = key
        if resource.get("resourceType") == "Encounter":
            self.encounters += 1
            self._encounter_subject[key] = reference(resource.get("subject"))

    def owner(self, index: int, resource: Json, full_url: str | None) -> str | None:
        """The patient (as `Patient/id`, or the key of an encounter without one) whose part
        the resource at position `index` of the file belongs to; None: every part."""
        kind = resource.get("resourceType")
        if kind == "Patient":
            return self._norm(_key(resource, full_url, index))
        if kind == "Encounter":
            key = _key(resource, full_url, index)
            return self._encounter_owner(key) or key
        encounter = next(
            (found for f in _ENCOUNTER_FIELDS if (found := reference(resource.get(f)))), None
        )
        about = next(
            (found for f in _PATIENT_FIELDS if (found := reference(resource.get(f)))), None
        )
        return self.owner_of(encounter, about)

    def owner_of(self, encounter: str | None, about: str | None) -> str | None:
        """The owner of a resource that belongs to `encounter` and is about `about` (each a
        reference as written, or None): the encounter's patient, else `about` unless it is a
        Group; None: every part."""
        found = self._encounter_owner(self._norm(encounter))
        if found:
            return found
        about = self._norm(about)
        if about and not about.startswith("Group/"):
            return about
        return None

    def _encounter_owner(self, key: str | None) -> str | None:
        if key is None or key not in self._encounter_subject:
            return None
        return self._norm(self._encounter_subject[key]) or key

    def _norm(self, ref: str | None) -> str | None:
        """A reference as the assembler normalises it (VisitAssembler.norm)."""
        return normalize(ref, self._aliases)


def part_of(owner: str, parts: int) -> int:
    """The part an owner's resources go to (CRC-32: the same in every process and run)."""
    return zlib.crc32(owner.encode()) % parts


def _key(resource: Json, full_url: str | None, index: int) -> str:
    """A resource's key: `Type/id`, else its fullUrl, else its position in the file."""
    kind, rid = resource.get("resourceType"), resource.get("id")
    if rid:
        return f"{kind}/{rid}"
    return full_url or f"#{index}"
