"""Gathering a visit: one search built from what the server supports, fallbacks otherwise."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
import responses

from plugin.gateway.client import FhirClient
from plugin.gateway.gather import WANTED, Gatherer, NotFound

BASE = "https://ehr.example.org/fhir"
ENCOUNTER = {
    "resourceType": "Encounter",
    "id": "e1",
    "subject": {"reference": "Patient/p1"},
    "diagnosis": [{"condition": {"reference": "Condition/c1"}}],
}


def capabilities(includes: list[str], revincludes: list[str], searchable: list[str]) -> dict:
    resources = [
        {
            "type": "Encounter",
            "searchInclude": includes,
            "searchRevInclude": revincludes,
            "searchParam": [{"name": "_id"}],
        }
    ]
    resources += [{"type": t, "searchParam": [{"name": "_id"}]} for t in searchable]
    return {"resourceType": "CapabilityStatement", "rest": [{"resource": resources}]}


def bundle(*resources: dict) -> dict:
    return {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}


@responses.activate
def test_a_capable_server_gets_everything_in_one_search() -> None:
    every_include = [v for n, v, _ in WANTED if n.startswith("_include")]
    every_rev = [v for n, v, _ in WANTED if n.startswith("_revinclude")]
    responses.get(f"{BASE}/metadata", json=capabilities(every_include, every_rev, []))
    condition = {"resourceType": "Condition", "id": "c1"}
    responses.get(f"{BASE}/Encounter", json=bundle(ENCOUNTER, condition))
    gathered = Gatherer(FhirClient(BASE)).encounter("e1")
    searches = [c for c in responses.calls if "/metadata" not in c.request.url]
    assert len(searches) == 1
    sent = parse_qsl(urlsplit(searches[0].request.url).query)
    assert ("_id", "e1") in sent
    assert {(n, v) for n, v, _ in WANTED} <= set(sent)
    assert [r["resourceType"] for r in gathered.resources] == ["Encounter", "Condition"]


@responses.activate
def test_what_the_server_cannot_include_is_searched_for_separately() -> None:
    responses.get(
        f"{BASE}/metadata", json=capabilities([], ["ChargeItem:context"], ["Procedure", "Coverage"])
    )
    responses.get(f"{BASE}/Encounter", json=bundle(ENCOUNTER))
    responses.get(f"{BASE}/Procedure", json=bundle({"resourceType": "Procedure", "id": "pr1"}))
    responses.get(f"{BASE}/Coverage", json=bundle({"resourceType": "Coverage", "id": "cv1"}))
    responses.get(f"{BASE}/Condition", json=bundle({"resourceType": "Condition", "id": "c1"}))
    gathered = Gatherer(FhirClient(BASE)).encounter("e1")
    urls = [c.request.url for c in responses.calls]
    main = parse_qsl(urlsplit(urls[1]).query)
    assert ("_revinclude", "ChargeItem:context") in main
    assert ("_revinclude", "Procedure:encounter") not in main
    assert f"{BASE}/Procedure?encounter=Encounter%2Fe1" in urls
    assert f"{BASE}/Coverage?beneficiary=Patient%2Fp1" in urls
    assert f"{BASE}/Condition?_id=c1" in urls  # a diagnosis no include brought
    assert {r["id"] for r in gathered.resources} == {"e1", "pr1", "cv1", "c1"}


@responses.activate
def test_capabilities_are_read_once_per_server() -> None:
    responses.get(f"{BASE}/metadata", json=capabilities([], [], []))
    responses.get(f"{BASE}/Encounter", json=bundle(ENCOUNTER))
    responses.get(f"{BASE}/Condition", json=bundle({"resourceType": "Condition", "id": "c1"}))
    gatherer = Gatherer(FhirClient(BASE))
    gatherer.encounter("e1")
    gatherer.encounter("e1")
    assert sum(1 for c in responses.calls if c.request.url.endswith("/metadata")) == 1


@responses.activate
def test_an_unknown_encounter_is_not_found() -> None:
    responses.get(f"{BASE}/metadata", json=capabilities([], [], []))
    responses.get(f"{BASE}/Encounter", json=bundle())
    with pytest.raises(NotFound, match="Encounter/nope is not on the EHR"):
        Gatherer(FhirClient(BASE)).encounter("nope")


@responses.activate
def test_a_day_is_one_search_and_the_fallbacks_cover_every_encounter_of_it() -> None:
    responses.get(f"{BASE}/metadata", json=capabilities([], [], ["Procedure"]))
    second = {**ENCOUNTER, "id": "e2", "diagnosis": []}
    responses.get(
        f"{BASE}/Encounter/e1", json={**ENCOUNTER, "period": {"start": "2026-11-02T08:00:00Z"}}
    )
    responses.get(f"{BASE}/Encounter", json=bundle(ENCOUNTER, second))
    responses.get(f"{BASE}/Procedure", json=bundle({"resourceType": "Procedure", "id": "pr1"}))
    responses.get(f"{BASE}/Condition", json=bundle({"resourceType": "Condition", "id": "c1"}))
    gathered = Gatherer(FhirClient(BASE)).encounter_day("e1")
    urls = [c.request.url for c in responses.calls if "/metadata" not in c.request.url]
    assert urls[0] == f"{BASE}/Encounter/e1"
    day = parse_qsl(urlsplit(urls[1]).query)
    assert day == [
        ("subject", "Patient/p1"),
        ("date", "ge2026-11-01"),
        ("date", "le2026-11-03"),
    ]
    assert f"{BASE}/Procedure?encounter=Encounter%2Fe1,Encounter%2Fe2" in urls
    assert {r["id"] for r in gathered.resources} == {"e1", "e2", "pr1", "c1"}


@responses.activate
def test_a_vanished_encounter_is_not_found_before_any_day_is_read() -> None:
    responses.get(f"{BASE}/Encounter/gone", status=404, json={"resourceType": "OperationOutcome"})
    with pytest.raises(NotFound, match="Encounter/gone is not on the EHR"):
        Gatherer(FhirClient(BASE)).encounter_day("gone")
