"""Which part of a large file each resource belongs to, so that a file can be decided a part at
a time (bounded memory) or a part per process (several cores), each patient whole in one part.

A first pass over the file (`PartitionPlan.note`, resource by resource) notes each
Encounter's patient and each Bundle entry's fullUrl; then each resource's *owner* is the
patient of the encounter it belongs to, else the patient it is about; a resource about no
patient (a Practitioner, an Organization, a Location …) belongs to every part. A patient's
encounters, procedures, observations, conditions, coverage, goals and plans therefore land in
the same part, and so do their billing days and their episode of care. What looks across
patients (one-on-one across patients) looks through an index of the whole file's procedures,
made in the first pass. Each resource's part is said once, at the first pass's end
(`PartitionPlan.parts`, by position in the file), so that a part's own pass parses only its
own lines and those about no patient.
"""

from __future__ import annotations

import zlib
from array import array

from fhir_mappings.facts import normalize, reference
from plugin.jsontypes import Json

# The fields that name the patient a resource is about, in the order they are looked at
_PATIENT_FIELDS = ("subject", "patient", "beneficiary")
# The fields that name the encounter a resource belongs to
_ENCOUNTER_FIELDS = ("encounter", "context")
EVERY = 0xFFFF  # the part of a resource about no patient: every part reads it
_PATIENT = 0  # a Patient, by its own key
_ENCOUNTER = 1  # an Encounter, by its own key
_OTHER = 2  # anything else, by the encounter and the patient it names


class PartitionPlan:
    """The owners of a file's resources, from one pass over it."""

    def __init__(self) -> None:
        self.encounters = 0  # how many Encounters the file has
        self._aliases: dict[str, str] = {}  # a Bundle entry's fullUrl → Type/id
        self._encounter_subject: dict[str, str | None] = {}  # encounter key → subject as written
        # What each resource's owner is worked out from — (PATIENT or ENCOUNTER, its key), else
        # (OTHER, its encounter, its patient) as written — known only once the whole file is
        # noted (an encounter may come after its procedures). Resources alike (a visit's
        # procedures and observations) share one `_inputs` entry; `_slots` is each
        # resource's, by position.
        self._inputs: list[tuple[int, str | None, str | None]] = []
        self._numbers: dict[tuple[int, str | None, str | None], int] = {}
        self._slots = array("i")

    def note(self, index: int, resource: Json, full_url: str | None) -> None:
        """The first pass, one resource at a time, each in the file's order (`index`: its
        position): every Encounter's patient, every fullUrl's resource, and what each
        resource's owner is worked out from. Owners are asked once all are noted (`parts`)."""
        if index != len(self._slots):
            raise ValueError(f"resource {index} noted out of order")
        key = _key(resource, full_url, index)
        if full_url:
            self._aliases[full_url] = key
        kind = resource.get("resourceType")
        inputs: tuple[int, str | None, str | None]
        if kind == "Encounter":
            self.encounters += 1
            self._encounter_subject[key] = reference(resource.get("subject"))
            inputs = (_ENCOUNTER, key, None)
        elif kind == "Patient":
            inputs = (_PATIENT, key, None)
        else:
            inputs = (
                _OTHER,
                _first_reference(resource, _ENCOUNTER_FIELDS),
                _first_reference(resource, _PATIENT_FIELDS),
            )
        slot = self._numbers.get(inputs)
        if slot is None:
            slot = self._numbers[inputs] = len(self._inputs)
            self._inputs.append(inputs)
        self._slots.append(slot)

    def parts(self, parts: int) -> array[int]:
        """Each noted resource's part of `parts` (`part_of` its owner), by position; EVERY for
        a resource about no patient. The notes are let go: ask once the file is noted."""
        if not 0 < parts < EVERY:
            raise ValueError(f"cannot split a file in {parts} parts")
        by_input = []
        for kind, first, second in self._inputs:
            if kind == _PATIENT:
                owner = self._norm(first)
            elif kind == _ENCOUNTER:
                owner = self._encounter_owner(first) or first
            else:
                owner = self.owner_of(first, second)
            by_input.append(EVERY if owner is None else part_of(owner, parts))
        found = array("H", map(by_input.__getitem__, self._slots))
        self._inputs, self._numbers, self._slots = [], {}, array("i")
        return found

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


def _first_reference(resource: Json, fields: tuple[str, ...]) -> str | None:
    """The reference in the first of `fields` that holds one."""
    for field in fields:
        found = reference(resource.get(field))
        if found:
            return found
    return None


def _key(resource: Json, full_url: str | None, index: int) -> str:
    """A resource's key: `Type/id`, else its fullUrl, else its position in the file."""
    kind, rid = resource.get("resourceType"), resource.get("id")
    if rid:
        return f"{kind}/{rid}"
    return full_url or f"#{index}"
