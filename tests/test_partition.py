"""A large file split by patient (fhir_mappings.partition), and its second pass reading only
what a part needs (fhir_mappings.bundle_io.read_chosen)."""

from __future__ import annotations

import io
import types
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_mappings import bundle_io
from fhir_mappings.bundle_io import InputError, read_chosen, read_resources
from fhir_mappings.partition import EVERY, PartitionPlan, part_of
from plugin.config.files import Settings
from plugin.pipeline import files
from plugin.pipeline.files import OfflineOutputs, process_file
from plugin.sample import SampleSpec, generate


def _parts(resources: list[tuple[dict[str, Any], str | None]], parts: int) -> list[int]:
    plan = PartitionPlan()
    for index, (resource, full_url) in enumerate(resources):
        plan.note(index, resource, full_url)
    return list(plan.parts(parts))


def test_a_patients_resources_share_a_part_whatever_their_order() -> None:
    """An encounter's procedure, read before the encounter, goes with the encounter's patient
    (a group procedure's subject is the Group); the patient's coverage by its beneficiary;
    a practitioner, about no patient, to every part."""
    resources: list[tuple[dict[str, Any], str | None]] = [
        ({"resourceType": "Procedure", "id": "p1", "encounter": {"reference": "Encounter/e1"},
          "subject": {"reference": "Group/g1"}}, None),
        ({"resourceType": "Practitioner", "id": "t1"}, None),
        ({"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Patient/a"}}, None),
        ({"resourceType": "Coverage", "id": "c1", "beneficiary": {"reference": "Patient/a"}}, None),
        ({"resourceType": "Patient", "id": "a"}, None),
        ({"resourceType": "Observation", "id": "o1", "subject": {"reference": "Group/g1"}}, None),
        ({"resourceType": "Encounter", "id": "e2"}, None),  # no patient: its own owner
    ]  # fmt: skip
    found = _parts(resources, 7)
    patient = part_of("Patient/a", 7)
    assert found == [patient, EVERY, patient, patient, patient, EVERY, part_of("Encounter/e2", 7)]


def test_full_urls_name_the_same_patient_as_type_and_id() -> None:
    """In a transaction Bundle, a reference by fullUrl (urn:uuid) is the resource it names,
    even when the entry that names it comes later."""
    resources: list[tuple[dict[str, Any], str | None]] = [
        ({"resourceType": "Procedure", "encounter": {"reference": "urn:uuid:e"}}, "urn:uuid:p"),
        ({"resourceType": "Encounter", "subject": {"reference": "urn:uuid:a"}}, "urn:uuid:e"),
        ({"resourceType": "Patient", "id": "a"}, "urn:uuid:a"),
    ]
    assert set(_parts(resources, 5)) == {part_of("Patient/a", 5)}


def test_resources_are_noted_in_the_files_order_and_parts_are_counted() -> None:
    plan = PartitionPlan()
    with pytest.raises(ValueError, match="out of order"):
        plan.note(1, {"resourceType": "Patient", "id": "a"}, None)
    plan.note(0, {"resourceType": "Patient", "id": "a"}, None)
    with pytest.raises(ValueError, match="0 parts"):
        plan.parts(0)
    assert list(plan.parts(3)) == [part_of("Patient/a", 3)]


def test_a_second_pass_yields_the_chosen_positions_as_the_first_counts_them(
    tmp_path: Path,
) -> None:
    """Blank lines are not resources; a line not chosen is not even parsed (the first pass
    checked it), a chosen one that is not JSON is still an error naming its line."""
    path = tmp_path / "in.ndjson"
    lines = [b'{"resourceType":"Patient","id":"a"}', b"", b'{"resourceType":"Patient","id":"b"}',
             b"not json", b"  ", b'{"resourceType":"Patient","id":"c"}']  # fmt: skip
    path.write_bytes(b"\n".join(lines) + b"\n")
    chosen = list(read_chosen(str(path), lambda at: at in (0, 3)))
    assert [(at, r["id"]) for at, r, _ in chosen] == [(0, "a"), (3, "c")]
    with pytest.raises(InputError, match=r"line 4: not valid JSON"):
        list(read_chosen(str(path), lambda at: at == 2))
    with pytest.raises(InputError, match=r"line 4: not valid JSON"):
        list(read_resources(str(path)))


def test_a_bundle_second_pass_keeps_entry_positions(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    entries = [{"fullUrl": f"urn:uuid:{n}", "resource": {"resourceType": "Patient", "id": n}}
               for n in "abc"]  # fmt: skip
    path.write_bytes(orjson.dumps({"resourceType": "Bundle", "type": "collection",
                                   "entry": entries}))  # fmt: skip
    chosen = list(read_chosen(str(path), lambda at: at != 1))
    assert [(at, r["id"], url) for at, r, url in chosen] == [
        (0, "a", "urn:uuid:a"),
        (2, "c", "urn:uuid:c"),
    ]
    assert [r["id"] for r, _ in read_resources(str(path))] == ["a", "b", "c"]


def test_each_part_parses_only_its_own_lines(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file decided in five parts is parsed once whole (the first pass) and then about once
    more in all — not once more per part."""
    path = tmp_path / "visits.ndjson"
    spec = SampleSpec(visits=200, seed=21, days=2, problem_rate=0.3)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in generate(spec)))
    resources = sum(1 for _ in read_resources(str(path)))
    parsed = [0]

    def loads(data: bytes) -> Any:
        parsed[0] += 1
        return orjson.loads(data)

    monkeypatch.setattr(
        bundle_io,
        "orjson",
        types.SimpleNamespace(loads=loads, JSONDecodeError=orjson.JSONDecodeError),
    )
    monkeypatch.setattr(files, "PART_VISITS", 40)
    monkeypatch.setattr(files, "WHOLE_BYTES", 0)
    summary = process_file(
        str(path), settings, OfflineOutputs(io.BytesIO(), io.BytesIO()),
        datetime.fromisoformat("2026-11-30T12:00:00+00:00"),
    )  # fmt: skip
    assert summary.visits == 200
    # the first pass parses every line; the parts between them each line once, and each the
    # lines about no patient (practitioners, organisations …)
    assert resources < parsed[0] - resources < 1.5 * resources


def test_a_file_that_grows_between_its_passes_is_bad_input(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its parts were worked out for the resources the first pass read: one more is an error
    naming the file, not a resource decided in no part or in the wrong one."""
    path = tmp_path / "visits.ndjson"
    spec = SampleSpec(visits=60, seed=22, days=2, problem_rate=0.3)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in generate(spec)))
    monkeypatch.setattr(files, "PART_VISITS", 20)
    monkeypatch.setattr(files, "WHOLE_BYTES", 0)
    planned = files._plan

    def then_grows(*args: Any) -> Any:
        found = planned(*args)
        with path.open("ab") as more:
            more.write(b'{"resourceType":"Patient","id":"late"}\n')
        return found

    monkeypatch.setattr(files, "_plan", then_grows)
    with pytest.raises(InputError, match=r"visits.ndjson: changed while it was read"):
        process_file(
            str(path), settings, OfflineOutputs(io.BytesIO(), io.BytesIO()),
            datetime.fromisoformat("2026-11-30T12:00:00+00:00"),
        )  # fmt: skip
